"""The operator SIGKILLed mid-reconcile and mid-propagation now runs on real pods
(tests/pods/test_operator_faults_realpods.py: the operator's Deployment's pod killed with containerd, each
moment hit exactly there). Nothing of the process edition is left but this name, which the process-based
fault tests still import `conditions` through; it lives in tests/faults/harness.py.
"""

from tests.faults.harness import conditions

__all__ = ["conditions"]
