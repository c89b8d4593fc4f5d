"""The hierarchical namespace over a converted bucket: its metadata store and the `hns://`
fsspec filesystem (registered through the `fsspec.specs` entry point)."""
