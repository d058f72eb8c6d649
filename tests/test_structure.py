"""The package's import structure (issue 18): imports point one way, without circles.

Read from the source with `ast` (nothing is imported): every `import` / `from ... import` inside
rnl_jax, at module level or inside a function (a lazy import closes a circle just the same), becomes
an edge between modules. Importing a submodule is not counted as importing its parent package, and a
module importing itself (for 'spawn' pickling) is no edge.
"""

import ast
import pathlib

from conftest import REPO

PACKAGE = 'rnl_jax'
# Modules inside the package allowed to import the trainer: none. Its entry point is main.py
# (outside the package); the test protocol, classify and ensembles must not pull it in for a helper.
TRAINER = 'rnl_jax.train'
TRAINER_IMPORTERS = frozenset()


def _modules():
  """{module name: path} of every .py file of the package."""
  root = REPO / PACKAGE
  modules = {}
  for path in sorted(root.rglob('*.py')):
    parts = path.relative_to(REPO).with_suffix('').parts
    if parts[-1] == '__init__':
      parts = parts[:-1]
    modules['.'.join(parts)] = path
  return modules


def _is_package(path: pathlib.Path) -> bool:
  return path.name == '__init__.py'


def _imports(name, path, modules):
  """[(imported module, [names taken from it])] of one module, resolved to the package's modules."""
  tree = ast.parse(path.read_text(), str(path))
  package = name if _is_package(path) else name.rpartition('.')[0]
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name in modules:
          found.append((alias.name, []))
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parent = package.split('.')
        parent = parent[: len(parent) - (node.level - 1)]
        base = '.'.join(parent + ([base] if base else []))
      if not (base == PACKAGE or base.startswith(PACKAGE + '.')):
        continue
      names = []
      for alias in node.names:
        sub = f'{base}.{alias.name}'
        if sub in modules:  # `from rnl_jax.data import sources`: the module itself
          found.append((sub, []))
        else:  # `from rnl_jax.data.sources import Name`: a name of `base`
          names.append(alias.name)
      if names and base in modules:
        found.append((base, names))
  return found


def _graph():
  modules = _modules()
  graph, taken = {}, {}
  for name, path in modules.items():
    edges = set()
    for target, names in _imports(name, path, modules):
      if target == name:
        continue
      edges.add(target)
      taken.setdefault(name, []).extend((target, n) for n in names)
    graph[name] = edges
  return graph, taken


def _cycles(graph):
  """Every strongly connected component of more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return sorted(out)


def test_the_graph_is_read():
  graph, _ = _graph()
  assert 'rnl_jax.train' in graph and 'rnl_jax.data.sources' in graph
  assert 'rnl_jax.checkpoint' in graph['rnl_jax.train']  # a module-level import
  assert 'rnl_jax.data.synthetic' in graph['rnl_jax.input_pipeline']  # a lazy one


def test_cycle_finder_finds_a_circle():
  assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
  assert _cycles({'a': {'b'}, 'b': set()}) == []


def test_no_import_circles():
  graph, _ = _graph()
  assert _cycles(graph) == []


def test_only_entry_points_import_the_trainer():
  graph, _ = _graph()
  importers = {name for name, edges in graph.items() if TRAINER in edges}
  assert importers <= TRAINER_IMPORTERS, sorted(importers - TRAINER_IMPORTERS)


def test_no_private_names_across_modules():
  _, taken = _graph()
  private = sorted(
      f'{name} <- {target}.{n}'
      for name, pairs in taken.items()
      for target, n in pairs
      if n.startswith('_')
  )
  assert private == []


def test_models_and_data_do_not_import_the_layers_above():
  """models/ and data/ are the bottom layer: they import neither the trainer, the protocol, the
  checkpoint code nor the input pipeline."""
  graph, _ = _graph()
  above = {
      'rnl_jax.train',
      'rnl_jax.protocol',
      'rnl_jax.classify',
      'rnl_jax.ensemble',
      'rnl_jax.checkpoint',
      'rnl_jax.convert',
      'rnl_jax.input_pipeline',
      'rnl_jax.config',
  }
  wrong = sorted(
      f'{name} -> {target}'
      for name, edges in graph.items()
      if name.startswith(('rnl_jax.models', 'rnl_jax.data'))
      for target in edges & above
  )
  assert wrong == []


def test_fileio_and_scores_need_no_jax():
  """The shared file helpers and the score files import no JAX (ensembles and the data writers'
  worker processes stay light)."""
  for name in ('fileio', 'scores'):
    tree = ast.parse((REPO / PACKAGE / f'{name}.py').read_text())
    imported = {
        alias.name.split('.')[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        (node.module or '').split('.')[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & {'jax', 'flax', 'optax', 'orbax', 'grain'}, (name, imported)
