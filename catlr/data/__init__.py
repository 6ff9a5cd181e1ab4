"""What DATA can be and how it becomes pixels: the kinds of DATA (datasets), image folders
(ingest), which files are images by name and how folders are walked (names), one image
decoded (images), a split's fingerprint (fingerprint)."""
