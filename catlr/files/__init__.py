"""Every byte catlr reads from or writes to a disk or a URL passes here: the checked reader
of HDF5 files and Zarr stores (containers), the course's schema (schema, zarr_store), the
input recorder (inputs), the output guard and atomic writes (outputs, remote), the mark
of catlr's pictures (pictures), fsspec URLs (storage)."""
