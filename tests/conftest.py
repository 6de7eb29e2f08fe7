"""Hypothesis profiles of the property-based tests (tests/test_ops_properties.py): ``ci`` (the
default: a bounded number of examples per test, so the suite stays fast) and ``long`` for local runs
(``python -m pytest tests/test_ops_properties.py --hypothesis-profile long``).  No deadline: an
example's time depends on the machine's load, not on the code under test.  ``ci`` keeps no example
database (CI runs from a fresh checkout); on a failure both print the example's reproduction blob."""

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=60, database=None, **_COMMON)
settings.register_profile("long", max_examples=1000, **_COMMON)
if settings.get_current_profile_name() == "default":  # --hypothesis-profile, when given, was loaded already
    settings.load_profile("ci")
