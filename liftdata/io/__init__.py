"""On-disk formats: the sample schema, sharded WebDataset and Parquet writers/readers."""

from liftdata.io.parquet import read_parquet, write_parquet
from liftdata.io.schema import Sample, SampleError, make_key, make_meta, validate_sample
from liftdata.io.shards import DatasetDirError, WriteResult, resume_state
from liftdata.io.verify import DatasetSummary, VerifyReport, dataset_summary, verify_dataset
from liftdata.io.webdataset import read_webdataset, write_webdataset

__all__ = [
    "Sample", "SampleError", "DatasetDirError", "WriteResult", "make_key", "make_meta", "validate_sample",
    "write_webdataset", "read_webdataset", "write_parquet", "read_parquet", "resume_state", "verify_dataset",
    "VerifyReport", "dataset_summary", "DatasetSummary",
]
