"""Imports follow the layers (docs/design.md): a module imports only from its
own package or from a package of a lower rank. This reads every module's
imports (without importing it) and fails on one that goes up or sideways.

    cli 6 > api 5 > http 4, engine 4 > store 3, runtime 3, network 3, registry 3 > fs 2 > native 1 > base 0

http and engine share a rank so neither may import the other: http is a
transport that knows nothing of Docker, and the engine knows nothing of
HTTP. store, runtime and network likewise: the runtime never sees records,
network (netlink, address pools) needs only native and base, and registry
(the distribution protocol's client) only base.
"""

import ast
import os

import pytest

PYD = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "pyd")

RANKS = {"cli": 6, "api": 5, "http": 4, "engine": 4, "store": 3, "runtime": 3, "network": 3, "registry": 3, "fs": 2, "native": 1,
         "base": 0}

# Top-level modules that are not packages, and the layer each belongs to.
LAYER_OF_MODULE = {"cli": "cli", "native": "native", "_shim": "native",
                   "errors": "base", "refs": "base", "config": "base", "timefmt": "base", "sysinfo": "base",
                   "_build": "base", "__init__": "base"}


def layer_of(module):
    """'pyd.engine.facade' -> 'engine'; 'pyd.errors' and 'pyd' -> 'base'."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    return LAYER_OF_MODULE.get(top, top)


def modules(root=PYD):
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
                yield (rel[:-len(".__init__")] if rel.endswith(".__init__") else rel), path


def imports(module, path, known=None):
    """The pyd modules that `module` (at `path`) imports, wherever in the file.
    `known` is the set of module names: `from pkg import name` imports the
    module pkg.name if there is one, else a name from pkg itself."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    is_pkg = path.endswith("__init__.py")
    package = module if is_pkg else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "pyd"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "pyd":
                continue
            # `from pkg import x`: x may be a module of pkg, or a name defined in pkg.
            out += [(f"{target}.{a.name}" if known is None or f"{target}.{a.name}" in known else target,
                     node.lineno) for a in node.names]
    return out


def violations(root=PYD):
    found = []
    known = {m for m, _ in modules(root)} | {"pyd._shim", "pyd._build"}
    for module, path in modules(root):
        src = layer_of(module)
        for target, line in imports(module, path, known):
            dst = layer_of(target)
            if dst not in RANKS:
                found.append(f"{path}:{line}: {module} imports {target}, which has no layer")
            elif src != dst and RANKS[dst] >= RANKS[src]:
                found.append(f"{path}:{line}: {module} ({src}, rank {RANKS[src]}) imports "
                             f"{target} ({dst}, rank {RANKS[dst]})")
    return found


def test_every_module_has_a_layer():
    unknown = sorted({layer_of(m) for m, _ in modules()} - set(RANKS))
    assert not unknown, f"modules outside every layer: {unknown}; add them to RANKS and docs/design.md"


def test_imports_go_down_the_layers():
    found = violations()
    assert not found, "imports that go up or sideways:\n" + "\n".join(found)


@pytest.mark.parametrize("planted,what", [
    ("from ..engine import facade\n", "store/containers.py imports engine"),
    ("from ..http.conn import Conn\n", "runtime/attach.py imports http"),
    ("import pyd.api.routes\n", "fs/tarsafe.py imports api"),
])
def test_a_planted_violation_is_caught(tmp_path, planted, what):
    import shutil
    root = tmp_path / "pyd"
    shutil.copytree(PYD, root, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    victim = {"engine": "store/containers.py", "http": "runtime/attach.py", "api": "fs/tarsafe.py"}[what.split()[-1]]
    with open(root / victim, "a") as f:
        f.write(planted)
    found = violations(str(root))
    assert len(found) == 1 and victim in found[0], found
