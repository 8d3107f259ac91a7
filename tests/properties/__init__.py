"""Hypothesis property tests of the estimators and the selection math, mirroring the package.

A test lives here when it states a law that an estimator or the selection obeys for every input
and checks it with ``@given`` against an oracle (brute force, a closed form, torch.distributions,
scipy, an exact-decimal or reference loop): bottom-K selection and its budget
(``test_selection.py``, ``test_budget.py``), the KL regulariser (``test_regularizer.py``), the
contract every relaxation keeps (``test_relaxations.py``), and in ``seqvae/`` the metrics, the KL
schedules and free bits, and next-word PMI with Spearman's correlation; each file is named after
the module it checks, ``strategies.py`` holds the shared hypothesis strategies, and
``_helpers.py`` the oracles and fixtures these tests share with the example-based tests of the
same modules, which stay beside them in ``tests/`` and ``tests/seqvae/``. The other ``@given``
tests (``tests/training/``, and the data, model, decoder, report, masker, embedding, adapter,
score-network and gradient-reversal tests) stay with the component they test: they check
behaviour that callers rely on (round trips, shapes, refusals, equivalence of code paths), not a
property of an estimator.
"""
