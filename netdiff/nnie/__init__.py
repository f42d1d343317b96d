"""HiSilicon NNIE (.wk) support: mapper cfg, preprocessing, log quantizer, diagnosis helpers.

Dump readers live in ``netdiff/readers/nnie_*.py`` and the quantization simulator in
``netdiff/simulators/nnie.py``. Facts and sources: docs/nnie.md.
"""
