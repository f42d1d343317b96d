"""Dump readers. Each import line below registers one format."""

from netdiff.readers.base import Reader, detect_format, get_reader, read_dump, reader_names, register_reader

from netdiff.readers import netdiff_dir  # noqa: E402,F401  (registration)
from netdiff.readers import npy_dir  # noqa: E402,F401
from netdiff.readers import npz  # noqa: E402,F401
from netdiff.readers import ascend  # noqa: E402,F401
from netdiff.readers import msit, polygraphy_json, rknn  # noqa: E402,F401
from netdiff.readers import nnie_blob, nnie_caffe, nnie_mapper, nnie_sim  # noqa: E402,F401

__all__ = ["Reader", "detect_format", "get_reader", "read_dump", "reader_names", "register_reader"]
