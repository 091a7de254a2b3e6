"""Reading MONAI bundle configs without running their code: references, macros and an
allow-listed subset of ``$`` expressions; components stay descriptions, never instantiated.

MONAI's own ``ConfigParser`` evaluates every ``$`` expression with ``eval`` and instantiates any
``_target_``, so opening a bundle can run arbitrary Python. :class:`SafeConfig` resolves only
the ids medseg asks for (``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``):

* ``@id`` / ``@id::sub::0`` (or the old ``#`` separator) references and ``%id`` macros
  (``%file.json::id`` within the bundle's ``configs/``), macros expanded as text first;
* ``{"_target_": X, ...}`` becomes a :class:`Component` (target name + resolved arguments);
  whether a target is acceptable is decided by the caller (MONAI networks, transforms, inferers);
  ``_disabled_`` components are dropped, other ``_`` keys ignored;
* ``$`` expressions are parsed with :mod:`ast` and evaluated only if every node is allowed:
  literals, containers, arithmetic (no powers; sequences capped), comparisons,
  ``x if c else y``, references, the builtins in ``_FUNCS`` and the dotted names in
  ``_CALLS`` / ``_ATTRS`` (``torch.device(...)``, ``torch.cuda.is_available()``,
  ``os.path.join(...)``, ``torch.float32``...). Anything else (imports, comprehensions,
  attribute calls on objects, ``eval``, ``open``...) raises
  :class:`~medseg.errors.UnsafeModelError` naming the id and the expression.
"""

from __future__ import annotations

import ast
import copy
import operator
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medseg.errors import ForeignModelError, UnsafeModelError

__all__ = ["Component", "SafeConfig"]

class _Refused(Exception):
    pass


_REF = re.compile(r"@(\w*(?:(?:::|#)\w*)*)")
_MAX_LEN = 100_000  # longest string/sequence an expression may build


def _mul(a: Any, b: Any) -> Any:
    seq, n = (a, b) if isinstance(a, (str, list, tuple)) else (b, a)
    if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > _MAX_LEN:
        raise _Refused("a sequence longer than the allow-list permits")
    return operator.mul(a, b)


def _range(*args: int) -> range:
    r = range(*args)
    if len(r) > _MAX_LEN:
        raise _Refused("a range longer than the allow-list permits")
    return r


_FUNCS: dict[str, Callable[..., Any]] = {
    "int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple,
    "len": len, "range": _range, "min": min, "max": max, "abs": abs, "round": round,
    "sorted": sorted, "dict": dict}
_CALLS: dict[str, Callable[..., Any]] = {
    "torch.device": torch.device, "torch.cuda.is_available": torch.cuda.is_available,
    "os.path.join": os.path.join, "os.path.dirname": os.path.dirname,
    "os.path.basename": os.path.basename}
_ATTRS: dict[str, Any] = {
    **{f"torch.{t}": getattr(torch, t) for t in ("float32", "float16", "float64", "int64",
                                                  "int32", "int16", "uint8", "bool")},
    **{f"{m}.{t}": getattr(np, t) for m in ("np", "numpy")
       for t in ("float32", "float16", "float64", "int64", "int32", "int16", "uint8")}}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
           ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
           ast.Is: operator.is_, ast.IsNot: operator.is_not}


@dataclass
class Component:
    """A ``_target_`` description: the target as written and its resolved arguments."""

    target: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The class name (last dotted part of the target)."""
        return self.target.rsplit(".", 1)[-1]


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


class SafeConfig:
    """One bundle config (parsed JSON/YAML dict). ``load(name)`` returns another config file of
    the bundle (for ``%file::id`` macros); ``where`` names the file in messages."""

    def __init__(self, config: dict[str, Any], where: str,
                 load: Callable[[str], dict[str, Any]] | None = None) -> None:
        self.where, self._load = where, load
        self.config = config
        self.config = self._expand(config, 0)  # macros are text copies, as MONAI resolves them
        self._stack: list[str] = []

    def _expand(self, node: Any, depth: int) -> Any:
        if depth > 32:
            raise ForeignModelError(f"{self.where}: macros nest more than 32 levels.")
        if isinstance(node, dict):
            return {k: self._expand(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [self._expand(v, depth) for v in node]
        if isinstance(node, str) and node.startswith("%"):
            return self._expand(self._macro(node), depth + 1)
        return node

    # ------------------------------------------------------------------ lookup
    def raw(self, ref: str, config: dict[str, Any] | None = None) -> Any:
        """The unresolved node at ``ref`` (``a::b::0``)."""
        node: Any = self.config if config is None else config
        for key in ref.replace("#", "::").split("::") if ref else []:
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise ForeignModelError(f"{self.where}: the config has no id {ref!r}.")
        return node

    def has(self, ref: str) -> bool:
        try:
            self.raw(ref)
        except ForeignModelError:
            return False
        return True

    def get(self, ref: str) -> Any:
        """The resolved value of ``ref``: references followed, expressions evaluated (within
        the allow-list), components described."""
        if ref in self._stack:
            raise ForeignModelError(f"{self.where}: circular reference through {ref!r}.")
        self._stack.append(ref)
        try:
            return self._resolve(self.raw(ref), ref)
        finally:
            self._stack.pop()

    # ------------------------------------------------------------------ resolution
    def _macro(self, text: str) -> Any:
        target = text[1:]
        if "::" in target and target.split("::", 1)[0].endswith((".json", ".yaml", ".yml")):
            fname, ref = target.split("::", 1)
            if self._load is None:
                raise ForeignModelError(f"{self.where}: macro {text!r} names another file.")
            return copy.deepcopy(self.raw(ref, self._load(fname)))
        return copy.deepcopy(self.raw(target))

    def _resolve(self, node: Any, where: str) -> Any:
        if isinstance(node, dict):
            if node.get("_disabled_") in (True, "true", "True"):
                return None
            if "_target_" in node:
                target = node["_target_"]
                if not isinstance(target, str):
                    raise ForeignModelError(f"{self.where}: {where}: _target_ must be a string.")
                if target.startswith(("$", "@", "%")):
                    raise UnsafeModelError(
                        f"{self.where}: {where}: computed _target_ {target!r} is outside "
                        "medseg's allow-list; use --trust-code only if you trust the bundle.")
                args = {k: self._resolve(v, f"{where}::{k}") for k, v in node.items()
                        if not k.startswith("_")}
                return Component(target, args)
            return {k: self._resolve(v, f"{where}::{k}") for k, v in node.items()}
        if isinstance(node, list):
            items = [self._resolve(v, f"{where}::{i}") for i, v in enumerate(node)]
            return [v for v, raw in zip(items, node, strict=True)
                    if not (v is None and isinstance(raw, dict) and raw.get("_disabled_"))]
        if isinstance(node, str):
            if node.startswith("@"):
                return self.get(node[1:])
            if node.startswith("$"):
                return self.evaluate(node[1:], where)
        return node

    # ------------------------------------------------------------------ expressions
    def evaluate(self, expr: str, where: str) -> Any:
        """Evaluate a ``$`` expression if every part of it is allowed (see module docs)."""
        refs: dict[str, str] = {}

        def sub(m: re.Match[str]) -> str:
            name = f"__ref{len(refs)}"
            refs[name] = m.group(1)
            return name

        code = _REF.sub(sub, expr.strip())
        try:
            tree = ast.parse(code, mode="eval")
            return self._eval(tree.body, refs)
        except (SyntaxError, _Refused) as exc:
            why = f" ({exc})" if str(exc) else ""
            raise UnsafeModelError(
                f"{self.where}: {where}: expression ${expr[:120]!s} is outside medseg's "
                f"allow-list{why}; medseg does not run it. Use --trust-code only if you trust "
                "the bundle's source.") from None

    def _eval(self, node: ast.AST, refs: dict[str, str]) -> Any:
        ev = lambda n: self._eval(n, refs)  # noqa: E731
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values, strict=True)
                    if k is not None}
        if isinstance(node, ast.Name):
            if node.id in refs:
                return self.get(refs[node.id])
            raise _Refused(f"name {node.id!r}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else (+v if isinstance(
                node.op, ast.UAdd) else not v)
        if isinstance(node, ast.BoolOp):
            vals = [ev(v) for v in node.values]
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare) and all(type(o) in _CMPOPS for o in node.ops):
            left, ok = ev(node.left), True
            for op, right in zip(node.ops, node.comparators, strict=True):
                r = ev(right)
                ok, left = ok and _CMPOPS[type(op)](left, r), r
            return ok
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name in _ATTRS:
                return _ATTRS[name]
            raise _Refused(f"attribute {name or node.attr!r}")
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            fn = _FUNCS.get(name or "") if isinstance(node.func, ast.Name) else _CALLS.get(
                name or "")
            if fn is None:
                raise _Refused(f"call of {name or ast.dump(node.func)[:40]!r}")
            return fn(*[ev(a) for a in node.args], **{k.arg: ev(k.value) for k in node.keywords
                                                       if k.arg is not None})
        raise _Refused(type(node).__name__)
