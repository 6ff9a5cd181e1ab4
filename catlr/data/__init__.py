"""What DATA can be and how it becomes pixels: the kinds of DATA (datasets), image folders
(ingest), one image decoded (images), a split's fingerprint (fingerprint)."""
