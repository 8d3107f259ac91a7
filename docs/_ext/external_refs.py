"""Resolve references to PyTorch and Python objects to their online documentation, offline.

intersphinx would do this by downloading ``objects.inv`` from pytorch.org and python.org at
build time; the documentation must build without a network, so this extension maps the names
that advmask's signatures and docstrings use to the pages those sites publish, following their
URL schemes:

* ``torch.Tensor``, ``torch.dtype``, ``torch.device`` and a few other classes have fixed pages;
* every other public ``torch.*`` object lives at ``generated/<qualified name>.html`` (a method or
  attribute at its class's page, with an anchor);
* Python built-ins, ``typing``, ``collections.abc`` and the few standard-library names used.

A reference that is neither advmask's own nor listed here still fails the nitpicky build, so a
typo in a docstring is caught instead of rendered as plain text.
"""

from __future__ import annotations

import builtins
import importlib
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

TORCH = "https://docs.pytorch.org/docs/stable/"
PYTHON = "https://docs.python.org/3/library/"

TORCH_PAGES = {
    "torch.Tensor": "tensors.html#torch.Tensor",
    "torch.dtype": "tensor_attributes.html#torch.dtype",
    "torch.device": "tensor_attributes.html#torch.device",
    "torch.Size": "size.html#torch.Size",
    "torch.Generator": "generated/torch.Generator.html",
    "torch.nn.Parameter": "generated/torch.nn.parameter.Parameter.html",
    "torch.nn.parameter.Parameter": "generated/torch.nn.parameter.Parameter.html",
    "torch.autograd.Function": "autograd.html#torch.autograd.Function",
    "torch.optim.Optimizer": "optim.html#torch.optim.Optimizer",
    "torch.distributions.Normal": "distributions.html#torch.distributions.normal.Normal",
}
# Aliases that appear in signatures (``from torch import nn``) -> canonical names.
TORCH_ALIASES = {
    "Tensor": "torch.Tensor",
    "nn.Module": "torch.nn.Module",
    "nn.Embedding": "torch.nn.Embedding",
    "nn.Parameter": "torch.nn.Parameter",
    "torch.nn.modules.module.Module": "torch.nn.Module",
    "torch.nn.modules.sparse.Embedding": "torch.nn.Embedding",
    "torch.nn.modules.rnn.LSTM": "torch.nn.LSTM",
    "torch.nn.modules.linear.Linear": "torch.nn.Linear",
    "torch._C.Generator": "torch.Generator",
    "torch.storage.Storage": "torch.Tensor",
}

PYTHON_PAGES = {
    "None": "constants.html#None",
    "Ellipsis": "constants.html#Ellipsis",
    "NotImplemented": "constants.html#NotImplemented",
    "int": "functions.html#int",
    "float": "functions.html#float",
    "bool": "functions.html#bool",
    "complex": "functions.html#complex",
    "object": "functions.html#object",
    "type": "functions.html#type",
    "str": "stdtypes.html#str",
    "bytes": "stdtypes.html#bytes",
    "dict": "stdtypes.html#dict",
    "list": "stdtypes.html#list",
    "tuple": "stdtypes.html#tuple",
    "set": "stdtypes.html#set",
    "frozenset": "stdtypes.html#frozenset",
    "slice": "functions.html#slice",
    "range": "stdtypes.html#range",
    "os.PathLike": "os.html#os.PathLike",
    "pathlib.Path": "pathlib.html#pathlib.Path",
    "pickle.UnpicklingError": "pickle.html#pickle.UnpicklingError",
    "argparse.ArgumentParser": "argparse.html#argparse.ArgumentParser",
    "os.replace": "os.html#os.replace",
    "fractions.Fraction": "fractions.html#fractions.Fraction",
    "dataclasses.dataclass": "dataclasses.html#dataclasses.dataclass",
    "dataclasses.field": "dataclasses.html#dataclasses.field",
    "contextlib.nullcontext": "contextlib.html#contextlib.nullcontext",
    "contextlib.AbstractContextManager": "contextlib.html#contextlib.AbstractContextManager",
}
PYTHON_MODULE_PAGES = {
    "typing": "typing.html",
    "collections.abc": "collections.abc.html",
    "collections": "collections.html",
    "os": "os.html",
    "io": "io.html",
    "pathlib": "pathlib.html",
    "operator": "operator.html",
}
RICH_PAGES = {
    "rich.table.Table": "https://rich.readthedocs.io/en/stable/reference/table.html#rich.table.Table",
    "rich.console.Console": (
        "https://rich.readthedocs.io/en/stable/reference/console.html#rich.console.Console"
    ),
    "rich.progress.Progress": (
        "https://rich.readthedocs.io/en/stable/reference/progress.html#rich.progress.Progress"
    ),
}

_EXCEPTIONS = {
    name
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type)
    and issubclass(getattr(builtins, name), BaseException)
}


def external_url(target: str) -> str | None:
    """The URL documenting ``target`` (a dotted Python name), or None if unknown here."""
    target = TORCH_ALIASES.get(target, target)
    if target in TORCH_PAGES:
        return TORCH + TORCH_PAGES[target]
    if target == "torch" or target.startswith("torch."):
        return TORCH + _torch_page(target)
    if target in _EXCEPTIONS:
        return f"{PYTHON}exceptions.html#{target}"
    if target in PYTHON_PAGES:
        return PYTHON + PYTHON_PAGES[target]
    for module, page in PYTHON_MODULE_PAGES.items():
        if target.startswith(module + "."):
            return f"{PYTHON}{page}#{target}"
    return RICH_PAGES.get(target)


def _torch_page(target: str) -> str:
    if target == "torch":
        return "torch.html"
    parts = target.split(".")
    # ``torch.nn.Module.parameters`` -> the class page with an anchor: the first capitalised
    # component is the class.
    for index, part in enumerate(parts):
        if part[:1].isupper():
            owner = ".".join(parts[: index + 1])
            if owner in TORCH_PAGES:
                page = TORCH_PAGES[owner].split("#")[0]
            else:
                page = f"generated/{owner}.html"
            return page if index == len(parts) - 1 else f"{page}#{target}"
    return f"generated/{target}.html"


def import_object(dotted: str) -> Any:
    """The object a dotted name refers to (module prefix, then attributes), or a sentinel."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return _MISSING
        return obj
    return _MISSING


_MISSING = object()


def documented_names(env: BuildEnvironment) -> dict[int, str]:
    """``id(object) -> documented name`` for every advmask object in the Python domain."""
    cache = getattr(env, "_advmask_documented", None)
    domain = env.get_domain("py")
    if cache is None or cache[0] != len(domain.objects):
        names: dict[int, str] = {}
        for name, entry in domain.objects.items():
            if entry.objtype == "module" or not name.startswith("advmask"):
                continue
            obj = import_object(name)
            if obj is not _MISSING and not isinstance(obj, (int, float, str, bool)):
                names.setdefault(id(obj), name)
        cache = (len(domain.objects), names)
        env._advmask_documented = cache  # type: ignore[attr-defined]
    return cache[1]


def _prefixes(context: list[str | None]) -> list[str]:
    """``["advmask.seqvae.data.batching.Batch", "advmask.seqvae.data.batching"]`` for a module
    and a class."""
    module, cls = context
    if not module:
        return []
    return ([f"{module}.{cls}"] if cls else []) + [module]


def resolve_missing(
    app: Sphinx, env: BuildEnvironment, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    """``missing-reference`` handler: link torch/Python targets, leave the rest unresolved.

    An advmask object referred to by another of its names (``advmask.AdversarialMasker`` for
    ``advmask.maskers.AdversarialMasker``, the name a re-export or a type hint uses) resolves to
    the page where it is documented.
    """
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"]
    # A relative name in a docstring (``:class:`Batch``` in advmask.seqvae.data) is looked up in
    # the module and class it was written in, as the Python domain does.
    context = [node.get("py:module"), node.get("py:class")]
    candidates = [target] + [
        f"{prefix}.{target}" for prefix in _prefixes(context) if not target.startswith("advmask.")
    ]
    for candidate in candidates:
        if not candidate.startswith("advmask."):
            continue
        obj = import_object(candidate)
        documented = documented_names(env).get(id(obj)) if obj is not _MISSING else None
        if documented is not None and documented != target:
            return env.get_domain("py").resolve_xref(
                env, node["refdoc"], app.builder, "obj", documented, node, contnode
            )
    if target.startswith("advmask."):
        return None
    url = external_url(target)
    if url is None and context[0] and "." not in target:
        # A bare name of an imported class (``Path``, ``Console``): autodoc leaves a class's
        # string annotations unevaluated, so look the name up where it was written.
        obj = import_object(f"{context[0]}.{target}")
        qualname = getattr(obj, "__qualname__", None)
        if qualname is not None:
            url = external_url(f"{getattr(obj, '__module__', '')}.{qualname}")
    if url is None:
        return None
    reference = nodes.reference("", "", internal=False, refuri=url, reftitle=target)
    reference += contnode
    return reference


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", resolve_missing)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
