"""Diagnosis rules. Each import line below registers one rule family."""

from netdiff.diagnosis.base import Context, diagnose, register_rule, rule_names

__all__ = ["Context", "diagnose", "register_rule", "rule_names"]
