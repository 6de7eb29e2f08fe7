"""Specs: what rebuilds an object, kept in checkpoints instead of the pickled object.

A spec is plain data in the format of LightningCLI configs, nested for arguments that are objects
themselves::

    {"class_path": "exodus_lightning.nn.neurons.LIF", "init_args": {"tau_mem": 20.0, ...}}

so a checkpoint that holds specs loads with ``torch.load(weights_only=True)`` (PyTorch's default)
and ``Model.load_from_checkpoint(path)`` rebuilds the network with no extra arguments.

- :func:`records_init_args` — class decorator: every instance remembers the arguments it was
  built with (the framework's neurons, layers, losses, surrogates and algorithm networks carry it).
- :func:`describe` — an object as a spec: its recorded arguments; an ``nn.Sequential``'s children;
  or, for a ``torch.nn`` layer, the constructor parameters read back from the attributes of the
  same name, accepted only when a copy built from them on the meta device has the same ``repr``
  and parameter shapes.  Anything else raises :class:`UndescribableError`.
- :func:`instantiate` — a spec back to the object.  It builds only classes of this framework,
  ``torch.nn`` modules and ``torch.optim`` optimizers and schedulers, so a checkpoint cannot name
  arbitrary code.
- :func:`save_hyperparameters_as_specs` — ``LightningModule.save_hyperparameters`` with the
  objects among the ``__init__`` arguments replaced by their specs.

Example:
    >>> from exodus_lightning.nn import LIF
    >>> spec = describe(LIF(tau_mem=10.0))
    >>> spec["class_path"], spec["init_args"]["tau_mem"]
    ('exodus_lightning.nn.neurons.LIF', 10.0)
    >>> instantiate(spec)
    LIF(tau_mem=10, reset='subtract', spike='single')
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import warnings
from typing import Any, Callable, Iterable, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["records_init_args", "describe", "instantiate", "save_hyperparameters_as_specs", "UndescribableError"]

_T = TypeVar("_T", bound=type)
_INIT_ARGS = "_spec_init_args"
_BUILDABLE: set[type] = set()  # classes decorated with records_init_args
_IMPORTABLE = ("exodus_lightning.", "torch.")


class UndescribableError(TypeError):
    """The object has no spec: it was not built by a class that records its arguments."""


def records_init_args(cls: _T) -> _T:
    """Class decorator: instances of exactly ``cls`` keep the arguments of their ``__init__`` call
    (defaults filled in) for :func:`describe`, and ``cls`` may be built by :func:`instantiate`.
    A dataclass is described by its fields and is only registered."""
    _BUILDABLE.add(cls)
    if dataclasses.is_dataclass(cls):
        return cls
    init = cls.__init__
    signature = inspect.signature(init)
    self_name = next(iter(signature.parameters))
    var_keyword = next((n for n, q in signature.parameters.items() if q.kind is inspect.Parameter.VAR_KEYWORD), None)

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self) is cls:  # a subclass's own __init__ records (or not) its arguments
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            del arguments[self_name]
            if var_keyword is not None:  # forwarded keywords are arguments like the named ones
                arguments.update(arguments.pop(var_keyword))
            object.__setattr__(self, _INIT_ARGS, arguments)

    cls.__init__ = __init__  # type: ignore[misc]
    return cls


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_torch_layer(cls: type) -> bool:
    return issubclass(cls, nn.Module) and cls.__module__.startswith("torch.nn.")


def _buildable(target: Any) -> bool:
    if target in _BUILDABLE:
        return True
    if not isinstance(target, type):
        return False
    from torch.optim.lr_scheduler import LRScheduler

    return _is_torch_layer(target) or issubclass(target, (torch.optim.Optimizer, LRScheduler))


def _spec(cls: type, init_args: dict[str, Any], partial: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"class_path": _class_path(cls), "init_args": {k: describe(v) for k, v in init_args.items()}}
    if partial:
        spec["partial"] = True
    return spec


def _sequential_spec(module: nn.Sequential) -> dict[str, Any]:
    names = [name for name, _ in module.named_children()]
    if names != [str(i) for i in range(len(names))]:
        raise UndescribableError(f"{type(module).__name__} with named children ({', '.join(names)}) has no spec: "
                                 "build it from positional modules")
    init_args: dict[str, Any] = {}
    recorded = module.__dict__.get(_INIT_ARGS, {})
    signature = inspect.signature(type(module).__init__)
    for name, p in signature.parameters.items():
        if p.kind is p.VAR_POSITIONAL:
            init_args[name] = list(module.children())  # the children now, not those it was built with
        elif name in recorded:
            init_args[name] = recorded[name]
    return _spec(type(module), init_args)


def _attribute_spec(module: nn.Module) -> dict[str, Any]:
    """A ``torch.nn`` layer's constructor parameters read back from its attributes (``bias`` and
    other bool parameters stored as a tensor-or-None become ``is not None``), checked by
    rebuilding on the meta device (no memory, no random numbers drawn)."""
    cls = type(module)
    init_args: dict[str, Any] = {}
    for name, p in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in ("device", "dtype"):
            continue
        try:
            value = getattr(module, name)
        except AttributeError:
            if p.default is p.empty:
                raise UndescribableError(f"{_class_path(cls)} keeps no attribute {name!r} for its required "
                                         "argument, so it has no spec") from None
            continue
        if isinstance(p.default, bool) and (value is None or isinstance(value, Tensor)):
            value = value is not None
        init_args[name] = value
    try:
        with torch.device("meta"):
            rebuilt = cls(**init_args)
    except Exception as e:  # noqa: BLE001 — any failure means the attributes do not describe it
        raise UndescribableError(f"{_class_path(cls)} cannot be rebuilt from its attributes: {e}") from None
    shapes = [(n, tuple(t.shape)) for n, t in module.state_dict().items()]
    if repr(rebuilt) != repr(module) or shapes != [(n, tuple(t.shape)) for n, t in rebuilt.state_dict().items()]:
        raise UndescribableError(f"{_class_path(cls)} rebuilt from its attributes differs from the original")
    return _spec(cls, init_args)


def describe(value: Any) -> Any:
    """``value`` as plain data (module docstring): numbers, strings, tensors and containers as
    they are, objects as specs ``{"class_path", "init_args"}`` (recursively), a
    ``functools.partial`` or a class as a spec with ``"partial": True``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(describe(v) for v in value)
    if isinstance(value, dict) and type(value) is dict and all(isinstance(k, str) for k in value):
        return {k: describe(v) for k, v in value.items()}
    if isinstance(value, functools.partial) and isinstance(value.func, type) and _buildable(value.func):
        bound = inspect.signature(value.func).bind_partial(*value.args, **value.keywords)
        return _spec(value.func, dict(bound.arguments), partial=True)
    if isinstance(value, type) and _buildable(value):
        return _spec(value, {}, partial=True)
    cls = type(value)
    if isinstance(value, nn.Sequential) and (cls in _BUILDABLE or _is_torch_layer(cls)):
        return _sequential_spec(value)
    if cls in _BUILDABLE:
        if dataclasses.is_dataclass(value):
            return _spec(cls, {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init})
        if _INIT_ARGS in value.__dict__:
            return _spec(cls, value.__dict__[_INIT_ARGS])
    if isinstance(value, nn.Module) and _is_torch_layer(cls):
        return _attribute_spec(value)
    raise UndescribableError(
        f"a {_class_path(cls)} has no spec: only the framework's classes (which record their arguments), "
        "torch.nn layers and containers of them can be stored as configuration"
    )


def _resolve(class_path: Any) -> Any:
    if not isinstance(class_path, str) or not class_path.startswith(_IMPORTABLE):
        raise ValueError(f"class_path {class_path!r} is not a class of exodus_lightning or torch: a checkpoint may "
                         "only name those")
    module_name, _, qualname = class_path.rpartition(".")
    parts = [qualname]
    while module_name:
        try:
            target: Any = importlib.import_module(module_name)
            break
        except ModuleNotFoundError:
            module_name, _, outer = module_name.rpartition(".")
            parts.insert(0, outer)
    else:
        raise ValueError(f"class_path {class_path!r} names no importable module")
    try:
        for part in parts:
            target = getattr(target, part)
    except AttributeError:
        raise ValueError(f"class_path {class_path!r} names nothing in {module_name}") from None
    if not _buildable(target):
        raise ValueError(f"class_path {class_path!r} is not a buildable class (a framework class that records its "
                         "arguments, a torch.nn module, or a torch.optim optimizer or scheduler)")
    return target


def _call_arguments(target: Callable[..., Any], init_args: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """``init_args`` by name -> positional and keyword arguments (``*args``/``**kwargs``
    parameters are stored under their own name)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    parameters = inspect.signature(target).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for name, value in init_args.items():
        p = parameters.get(name)
        if p is not None and p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p is not None and p.kind is p.VAR_KEYWORD:
            kwargs.update(value)
        elif p is not None or accepts_any:
            kwargs[name] = value
        else:
            raise ValueError(f"{target.__qualname__} has no argument {name!r} (spec init_args: {', '.join(init_args)})")
    return args, kwargs


def instantiate(value: Any, factory: bool = False) -> Any:
    """Build the object a spec describes (specs nested anywhere in lists, tuples and dicts are
    built too; other values are returned as they are).  ``factory=True`` returns
    ``functools.partial(cls, **init_args)`` instead of calling it (optimizer and scheduler
    arguments, which are called later with the parameters / the optimizer)."""
    if isinstance(value, dict) and "class_path" in value:
        target = _resolve(value["class_path"])
        init_args = value.get("init_args") or {}
        if not isinstance(init_args, dict):
            raise ValueError(f"init_args of {value['class_path']} must be a dict, got {type(init_args).__name__}")
        args, kwargs = _call_arguments(target, {k: instantiate(v) for k, v in init_args.items()})
        if factory or value.get("partial"):
            return functools.partial(target, *args, **kwargs)
        return target(*args, **kwargs)
    if type(value) in (list, tuple):
        return type(value)(instantiate(v) for v in value)
    if type(value) is dict:
        return {k: instantiate(v) for k, v in value.items()}
    return value


def _cli_given_hyperparameters() -> bool:
    """Whether LightningCLI is building the module: it then hands ``save_hyperparameters`` its
    own config (class paths and arguments) and the instantiator that rebuilds from it."""
    try:
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # another Lightning: describe the objects ourselves
        return False
    return _given_hyperparameters.get() is not None


def save_hyperparameters_as_specs(module: Any, drop_undescribable: Iterable[str] = ()) -> None:
    """Call from a ``LightningModule.__init__`` instead of ``self.save_hyperparameters()``: the
    caller's arguments are saved with every object replaced by its spec, so the checkpoint loads
    with ``weights_only=True`` and ``load_from_checkpoint(path)`` rebuilds the module (its
    ``__init__`` must pass specs through :func:`instantiate`).  An object without a spec is
    dropped when its name is in ``drop_undescribable`` (it must then be passed again when
    loading), else kept as the object (pickled: such a checkpoint needs ``weights_only=False``)."""
    frame = inspect.currentframe().f_back  # type: ignore[union-attr]
    if _cli_given_hyperparameters():
        module.save_hyperparameters(frame=frame)
        return
    info = inspect.getargvalues(frame)  # type: ignore[arg-type]
    arguments = {name: info.locals[name] for name in info.args[1:]}
    if info.keywords:
        arguments.update(info.locals[info.keywords])
    drop = set(drop_undescribable)
    described = {}
    for name, value in arguments.items():
        try:
            described[name] = describe(value)
        except UndescribableError:
            if name in drop:
                continue
            described[name] = value
    with warnings.catch_warnings():
        # kept objects are the user's choice; the warning would advise ignoring what we need
        warnings.filterwarnings("ignore", message=r"Attribute '\w+' is an instance of `nn.Module`")
        module.save_hyperparameters(described, frame=frame)
