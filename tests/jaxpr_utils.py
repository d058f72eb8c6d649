"""Walking a jaxpr in tests that check which primitives a program is made of."""

from jax.extend import core as jax_core


def equations(jaxpr):
  """Every equation of `jaxpr`, those of its sub-jaxprs (custom_vjp, pjit, scan, ...) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax_core.jaxprs_in_params(eqn.params):
      yield from equations(sub)
