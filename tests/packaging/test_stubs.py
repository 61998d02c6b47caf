# SPDX-License-Identifier: GPL-2.0-only
"""The type stubs of the compiled modules (lgcore/vcpu.pyi, idt.pyi,
deliver.pyi) against the modules themselves.

Two checks.  mypy's stubtest (mypy is in the ``test`` extra) compares names,
kinds and what it can introspect.  Cython's ``binding=False`` functions carry
no ``__text_signature__``, so stubtest cannot see their parameters; the
second check reads them from the signature line ``embedsignature`` puts at
the top of every docstring, and checks what a stub promises about each
attribute (read-only or settable) on live objects.
"""
import ast
import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import lgcore
from lgcore import constants

HERE = Path(__file__).resolve().parent
PKG = Path(lgcore.__file__).resolve().parent
MODULES = ["lgcore.vcpu", "lgcore.idt", "lgcore.deliver"]

# Dunders that are part of a class's API when the class defines them.
PROTOCOL_DUNDERS = {
    "__enter__", "__exit__", "__len__", "__iter__", "__next__", "__getitem__",
    "__setitem__", "__delitem__", "__contains__", "__call__", "__bool__",
    "__index__", "__int__", "__eq__", "__ne__", "__lt__", "__le__", "__gt__",
    "__ge__", "__hash__", "__getattr__", "__setattr__", "__buffer__",
}


def test_engine_modules_are_compiled():
    for name in MODULES:
        mod = importlib.import_module(name)
        assert Path(mod.__file__).suffix == ".so", f"{name} is not the compiled module"
        assert (PKG / f"{name.split('.')[1]}.pyi").is_file()
    assert (PKG / "py.typed").is_file()


def test_stubtest(tmp_path):
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy (the test extra) is not installed: pip install -e '.[test]'",
                    pytrace=False)
    run = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--concise",
         "--mypy-config-file", str(HERE / "stubtest_mypy.ini"),
         "--allowlist", str(HERE / "stubtest_allowlist.txt"), *MODULES],
        capture_output=True, text=True, cwd=PKG.parent,
        env=dict(os.environ, MYPY_CACHE_DIR=str(tmp_path / "mypy_cache")))
    assert run.returncode == 0, run.stdout + run.stderr


# ---- the stubs, parsed -------------------------------------------------------

class StubClass:
    def __init__(self, node):
        self.name = node.name
        self.bases = [b.id for b in node.bases if isinstance(b, ast.Name)]
        self.members = {}       # name -> "method" | "property" | "settable" | "attribute"
        self.functions = {}     # name -> ast.FunctionDef
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                decos = [ast.unparse(d) for d in item.decorator_list]
                if "property" in decos:
                    self.members.setdefault(item.name, "property")
                elif any(d.endswith(".setter") for d in decos):
                    self.members[item.name] = "settable"
                else:
                    self.members[item.name] = "method"
                    self.functions[item.name] = item
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                self.members[item.target.id] = "attribute"


def parse_stub(modname):
    tree = ast.parse((PKG / f"{modname.split('.')[1]}.pyi").read_text())
    names, functions, classes = set(), {}, {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            functions[node.name] = node
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            classes[node.name] = StubClass(node)
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {n for n in names if not n.startswith("_")}, functions, classes


def stub_members(classes, name):
    """A stub class's members, its stub bases' included."""
    out = {}
    for base in classes[name].bases:
        if base in classes:
            out.update(stub_members(classes, base))
    out.update(classes[name].members)
    return out


def stub_function(classes, cls, name):
    for c in [cls] + classes[cls].bases:
        if c in classes and name in classes[c].functions:
            return classes[c].functions[name]
    return None


# ---- the runtime, introspected ------------------------------------------------

def runtime_names(mod):
    """Public names, less imported modules (as stubtest has it)."""
    return {n for n in dir(mod)
            if not n.startswith("_") and not isinstance(getattr(mod, n), types.ModuleType)}


def runtime_members(cls):
    """Members the class (and its bases from the same module) define."""
    out = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__ != cls.__module__:
            continue
        for name, obj in vars(klass).items():
            if name.startswith("_") and name not in PROTOCOL_DUNDERS:
                continue
            kind = type(obj).__name__
            out[name] = "data" if kind in ("getset_descriptor", "member_descriptor", "property") \
                else "method"
    return out


def doc_signature(obj):
    """The parameters of ``obj`` from its embedsignature line, as ast.arguments."""
    doc = obj.__doc__ or ""
    first = doc.splitlines()[0] if doc else ""
    head, _, params = first.partition("(")
    if not params.endswith(")") or not head.replace(".", "").isidentifier():
        return None
    fn = ast.parse(f"def f({', '.join(_drop_c_types(params[:-1]))}): pass").body[0]
    return fn.args


def _drop_c_types(params):
    """Cython writes typed parameters as ``VCpu cpu``: keep the name."""
    parts, depth, cur = [], 0, ""
    for ch in params:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        cur += ch
    if cur.strip():
        parts.append(cur)
    out = []
    for part in parts:
        decl, eq, default = part.partition("=")
        out.append(decl.split()[-1] + (eq + default if eq else ""))
    return out


def default_value(node):
    """A default as a value: literals, and the header's LG_ names by their
    lgcore.constants value.  ``...`` (a stub's "some default") is Ellipsis."""
    if isinstance(node, ast.Name) and node.id.startswith("LG_"):
        return getattr(constants, node.id[3:])
    return ast.literal_eval(node)


def param_table(args, drop_first=False, kinds=True):
    table = []
    pos = args.posonlyargs + args.args
    defaults = [None] * (len(pos) - len(args.defaults)) + list(args.defaults)
    for a, d in zip(pos, defaults):
        table.append((a.arg, "pos" if kinds else "", d))
    if args.vararg:
        table.append(("*" + args.vararg.arg, "var", None))
    for a, d in zip(args.kwonlyargs, args.kw_defaults):
        table.append((a.arg, "kw" if kinds else "", d))
    if args.kwarg:
        table.append(("**" + args.kwarg.arg, "var", None))
    if drop_first:
        table = table[1:]
    return table


def compare(where, runtime_args, stub_args, kinds=True, drop_runtime_first=False,
            drop_stub_first=False):
    rt = param_table(runtime_args, drop_runtime_first, kinds)
    st = param_table(stub_args, drop_stub_first, kinds)
    problems = []
    if [(n, k) for n, k, _ in rt] != [(n, k) for n, k, _ in st]:
        problems.append(f"{where}: runtime {[(n, k) for n, k, _ in rt]} != stub {[(n, k) for n, k, _ in st]}")
        return problems
    for (name, _k, rd), (_n, _k2, sd) in zip(rt, st):
        if (rd is None) != (sd is None):
            problems.append(f"{where}: default of {name}: runtime "
                            f"{None if rd is None else ast.unparse(rd)}, stub "
                            f"{None if sd is None else ast.unparse(sd)}")
        elif rd is not None:
            stub_default = default_value(sd)
            if stub_default is not Ellipsis and default_value(rd) != stub_default:
                problems.append(f"{where}: default of {name}: runtime {ast.unparse(rd)}, "
                                f"stub {ast.unparse(sd)}")
    return problems


# ---- the checks -----------------------------------------------------------------

@pytest.mark.parametrize("modname", MODULES)
def test_module_names(modname):
    mod = importlib.import_module(modname)
    stub_names, _functions, _classes = parse_stub(modname)
    rt = runtime_names(mod)
    assert sorted(rt - stub_names) == [], "public at runtime, missing from the stub"
    assert sorted(stub_names - rt) == [], "in the stub, absent at runtime"


@pytest.mark.parametrize("modname", MODULES)
def test_class_members(modname):
    mod = importlib.import_module(modname)
    _names, _functions, classes = parse_stub(modname)
    problems = []
    for cname in classes:
        rt = runtime_members(getattr(mod, cname))
        st = {n: k for n, k in stub_members(classes, cname).items()
              if not n.startswith("_") or n in PROTOCOL_DUNDERS}
        for name in sorted(set(rt) - set(st)):
            problems.append(f"{cname}.{name}: at runtime, not in the stub")
        for name, kind in sorted(st.items()):
            if name not in rt:
                if kind == "attribute":
                    continue        # an instance attribute: see test_attributes
                problems.append(f"{cname}.{name}: in the stub, not at runtime")
            elif (kind == "method") != (rt[name] == "method"):
                problems.append(f"{cname}.{name}: stub {kind}, runtime {rt[name]}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def instances():
    guest = lgcore.Guest(bytearray(0x4000))
    cpu = guest.add_vcpu()
    yield {
        "Guest": guest, "VCpu": cpu, "WallClock": lgcore.WallClock(),
        "VirtualClock": lgcore.VirtualClock(5), "Clock": guest.clock,
        "GuestKilled": lgcore.GuestKilled("Writing timestamp"),
        "GuestClosed": lgcore.GuestClosed("closed"),
    }
    guest.close()


def test_attributes(instances):
    """What the stub says about each attribute holds on a live object:
    a bare @property refuses assignment, a setter or a plain annotation
    takes one."""
    _names, _functions, classes = parse_stub("lgcore.vcpu")
    problems = []
    for cname in classes:
        obj = instances[cname]
        for name, kind in stub_members(classes, cname).items():
            if kind == "method" or name.startswith("__"):
                continue
            if not hasattr(obj, name):
                problems.append(f"{cname}.{name}: no such attribute")
                continue
            value = getattr(obj, name)
            try:
                setattr(obj, name, value)
                settable = True
            except AttributeError:
                settable = False
            if settable != (kind != "property"):
                problems.append(f"{cname}.{name}: stub {kind}, runtime "
                                f"{'settable' if settable else 'read-only'}")
    assert not problems, "\n".join(problems)


def test_function_signatures():
    mod = importlib.import_module("lgcore.vcpu")
    _names, functions, _classes = parse_stub("lgcore.vcpu")
    problems = []
    for name, fn in functions.items():
        rt = doc_signature(getattr(mod, name))
        assert rt is not None, f"{name}: no embedded signature"
        problems += compare(name, rt, fn.args)
    assert not problems, "\n".join(problems)


def test_method_signatures():
    mod = importlib.import_module("lgcore.vcpu")
    _names, _functions, classes = parse_stub("lgcore.vcpu")
    problems = []
    for cname, sc in classes.items():
        cls = getattr(mod, cname)
        for name, kind in stub_members(classes, cname).items():
            if kind != "method" or name in ("__init__", "__new__"):
                continue
            rt = doc_signature(getattr(cls, name))
            if rt is None:
                problems.append(f"{cname}.{name}: no embedded signature")
                continue
            problems += compare(f"{cname}.{name}", rt, stub_function(classes, cname, name).args)
    assert not problems, "\n".join(problems)


def test_constructor_signatures():
    """Constructors: the class docstring's signature line (names and
    defaults; Cython 3 misplaces the ``*`` of keyword-only parameters in a
    class's line, so kinds are checked by calling, below)."""
    mod = importlib.import_module("lgcore.vcpu")
    _names, _functions, classes = parse_stub("lgcore.vcpu")
    problems = []
    for cname in classes:
        cls = getattr(mod, cname)
        if issubclass(cls, BaseException):
            fn = stub_function(classes, cname, "__init__")
            if fn is not None:
                problems += compare(f"{cname}.__init__", doc_signature(cls.__init__), fn.args)
            continue
        rt = doc_signature(cls)
        fn = stub_function(classes, cname, "__init__") or stub_function(classes, cname, "__new__")
        if rt is None:
            continue        # no Python-level __init__: checked by calling below
        assert fn is not None, f"{cname}: the stub declares no constructor"
        problems += compare(cname, rt, fn.args, kinds=False, drop_stub_first=True)
    assert not problems, "\n".join(problems)


def test_constructor_kinds():
    """Keyword-only and positional parameters of the constructors as the
    stub declares them, by calling."""
    ram = bytearray(0x4000)
    guest = lgcore.Guest(ram, profile="hardened", syscall_vector=0x40,
                         clock=lgcore.VirtualClock(0), pfn_limit=2)
    assert (guest.profile, guest.syscall_vector, guest.pfn_limit) == ("hardened", 0x40, 2)
    with pytest.raises(TypeError):
        lgcore.Guest(ram, "hardened")
    cpu = lgcore.VCpu(guest, 3)
    assert (cpu.guest, cpu.index) == (guest, 3)
    with pytest.raises(TypeError):
        lgcore.VCpu()
    assert lgcore.VirtualClock(9).now_ns() == 9
    assert lgcore.VirtualClock(start_ns=9).now_ns() == 9
    guest.close()
