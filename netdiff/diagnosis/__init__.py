"""Diagnosis rules. Each import line below registers one rule family.

The import order is the priority: a rule that names a specific cause for a layer claims it
(:meth:`Context.claim`), and the more generic rules after it skip that layer.
"""

from netdiff.diagnosis.base import Context, diagnose, register_rule, rule_names

from netdiff.diagnosis import fused  # noqa: E402,F401  (registration)
from netdiff.diagnosis import input_quant  # noqa: E402,F401
from netdiff.diagnosis import output_quant  # noqa: E402,F401
from netdiff.diagnosis import inputs  # noqa: E402,F401
from netdiff.diagnosis import lint_findings  # noqa: E402,F401
from netdiff.diagnosis import numeric  # noqa: E402,F401
from netdiff.diagnosis import scale  # noqa: E402,F401
from netdiff.diagnosis import nnie  # noqa: E402,F401
from netdiff.diagnosis import detection  # noqa: E402,F401
from netdiff.diagnosis import ascend  # noqa: E402,F401
from netdiff.diagnosis import quant_scale  # noqa: E402,F401
from netdiff.diagnosis import weights  # noqa: E402,F401
from netdiff.diagnosis import resample  # noqa: E402,F401
from netdiff.diagnosis import axis  # noqa: E402,F401
from netdiff.diagnosis import flatten  # noqa: E402,F401
from netdiff.diagnosis import quant  # noqa: E402,F401
from netdiff.diagnosis import structure  # noqa: E402,F401
from netdiff.diagnosis import propagation  # noqa: E402,F401
from netdiff.diagnosis import samples  # noqa: E402,F401
from netdiff.diagnosis import unexplained  # noqa: E402,F401  (last: sees every other finding)

__all__ = ["Context", "diagnose", "register_rule", "rule_names"]
