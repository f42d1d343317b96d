"""Huawei Ascend (atc / ACL) support: binary dump files, device formats, om-JSON fusion maps, AIPP.

Nothing here needs a CANN install: the dump header is decoded by a small protobuf wire reader
(:mod:`netdiff.ascend.dumpfile`) written from the ``toolkit.dumpdata.DumpData`` schema.
"""
