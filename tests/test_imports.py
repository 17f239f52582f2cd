"""Imports run one way: kernels never import models, and no jaxlab modules import each other in a
cycle. The graph is read from the source with `ast` (top-level and function-level imports alike,
relative imports resolved), so nothing is imported to check it."""

from __future__ import annotations

import ast
import collections
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules(root: pathlib.Path, package: str) -> dict[str, tuple[pathlib.Path, bool]]:
  """Dotted name -> (source file, is a package) for every module under root/package."""
  modules = {}
  for path in sorted((root / package).rglob("*.py")):
    parts = path.relative_to(root).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
  return modules


def _imported_names(module: str, is_package: bool, tree: ast.AST) -> list[str]:
  """Absolute dotted names of everything `module` imports, anywhere in its body; `from p import
  x` gives p.x, which names a module or an attribute of p."""
  names = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      prefix = node.module or ""
      if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(parts[: len(parts) - node.level + 1])
        prefix = f"{base}.{prefix}" if prefix else base
      names += [f"{prefix}.{alias.name}" for alias in node.names]
  return names


def import_graph(root: pathlib.Path, package: str = "jaxlab") -> dict[str, set[str]]:
  """Module -> the package's modules it imports. A package's __init__ importing its own
  submodules (re-exports) is left out: every submodule import runs that __init__ anyway."""
  modules = _modules(root, package)
  graph = {}
  for module, (path, is_package) in modules.items():
    targets = set()
    names = _imported_names(module, is_package, ast.parse(path.read_text(), str(path)))
    for name in names:
      if name != package and not name.startswith(package + "."):
        continue
      while name not in modules:  # an attribute: the module that defines it
        name = name.rpartition(".")[0]
      if name != module and not (is_package and name.startswith(module + ".")):
        targets.add(name)
    graph[module] = targets
  return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One shortest cycle [a, ..., a] per strongly connected component of more than one module."""
  index, low, stack, on_stack, components = {}, {}, [], set(), []

  def connect(node):  # Tarjan's algorithm
    index[node] = low[node] = len(index)
    stack.append(node)
    on_stack.add(node)
    for succ in sorted(graph[node]):
      if succ not in index:
        connect(succ)
        low[node] = min(low[node], low[succ])
      elif succ in on_stack:
        low[node] = min(low[node], index[succ])
    if low[node] == index[node]:
      component = set()
      while node not in component:
        member = stack.pop()
        on_stack.discard(member)
        component.add(member)
      components.append(component)

  for node in sorted(graph):
    if node not in index:
      connect(node)
  return [_shortest_cycle(graph, c) for c in components if len(c) > 1]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
  """Breadth-first from the component's first module back to itself, staying inside it."""
  start = min(component)
  parent, queue = {}, collections.deque([start])
  while queue:
    node = queue.popleft()
    for succ in sorted(graph[node] & component):
      if succ == start:
        path = [node]
        while path[-1] != start:
          path.append(parent[path[-1]])
        return path[::-1] + [start]
      if succ not in parent:
        parent[succ] = node
        queue.append(succ)
  raise AssertionError(f"no cycle through {start} in its component")


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
  return import_graph(ROOT)


def test_kernels_do_not_import_models(graph):
  edges = [
    f"{module} imports {target}"
    for module, targets in sorted(graph.items())
    if module.startswith("jaxlab.kernels")
    for target in sorted(targets)
    if target == "jaxlab.models" or target.startswith("jaxlab.models.")
  ]
  assert not edges, "jaxlab.kernels must not import jaxlab.models:\n" + "\n".join(edges)


def test_no_import_cycles(graph):
  cycles = [" -> ".join(cycle) for cycle in find_cycles(graph)]
  assert not cycles, "import cycles between jaxlab modules:\n" + "\n".join(cycles)


def test_graph_resolves_relative_and_function_level_imports(tmp_path):
  """The checker itself, on a small package: a cycle through a relative import inside a
  function is found; an __init__ re-exporting its submodules is not a cycle."""
  pkg = tmp_path / "pkg"
  (pkg / "sub").mkdir(parents=True)
  (pkg / "__init__.py").write_text("from pkg.a import f\n")
  (pkg / "a.py").write_text("import pkg.sub.b\n\ndef f():\n  from pkg import c\n")
  (pkg / "c.py").write_text("import os\nfrom pkg import a\n")
  (pkg / "sub" / "__init__.py").write_text("from . import b\n")
  (pkg / "sub" / "b.py").write_text("from .. import c as _\nfrom ..a import f\n")
  graph = import_graph(tmp_path, "pkg")
  assert graph == {
    "pkg": set(),
    "pkg.a": {"pkg.sub.b", "pkg.c"},
    "pkg.c": {"pkg.a"},
    "pkg.sub": set(),
    "pkg.sub.b": {"pkg.c", "pkg.a"},
  }
  assert find_cycles(graph) == [["pkg.a", "pkg.c", "pkg.a"]]


# Heavy optional packages that jaxlab.data modules import only inside the functions that need
# them, so importing the data pipeline never loads TensorFlow (tests/data/test_seqio_tasks.py
# checks the same at run time where seqio is installed).
_LAZY_IN_DATA = ("tensorflow", "tensorflow_datasets", "tensorflow_text", "seqio")


def _module_level_imports(tree: ast.AST) -> list[str]:
  """Names imported by statements that run on import: everything outside function bodies."""
  names, stack = [], [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
      continue
    if isinstance(node, ast.Import):
      names += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and not node.level:
      names.append(node.module or "")
    stack.extend(ast.iter_child_nodes(node))
  return names


def test_data_modules_import_tensorflow_and_seqio_lazily():
  heavy = [
    f"{path.relative_to(ROOT)} imports {name}"
    for path in sorted((ROOT / "jaxlab" / "data").rglob("*.py"))
    for name in _module_level_imports(ast.parse(path.read_text(), str(path)))
    if name.split(".")[0] in _LAZY_IN_DATA
  ]
  assert not heavy, "import these inside the functions that use them:\n" + "\n".join(heavy)
  names = _module_level_imports(ast.parse("import a.b\nfrom c import d\ndef f():\n  import e\n"))
  assert sorted(names) == ["a.b", "c"]
