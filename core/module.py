"""The base class of every module: `Module`, plus the `once` and `no_name_scope` decorators.

A module is a `tf.Module` whose methods all run inside the module's name scope, so the
variables it creates lazily read `mlp/linear_0/w:0` whichever method created them and
wherever it was called from. Construction also runs inside that scope, so submodules built
in `__init__` nest under their parent.
"""

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import tensorflow as tf

F = TypeVar("F", bound=Callable[..., Any])

_NO_NAME_SCOPE = "_core_no_name_scope"
_ONCE_WRAPPED = "_core_once_wrapped"
# Per-instance bookkeeping lives in `__dict__` under these keys. They bypass
# `tf.Module.__setattr__` (no tracking) and are hidden from `tf.Module._flatten`.
_ONCE_DONE = "_core_once_done"
_CTOR_SCOPE = "_core_ctor_scope"
_REPR = "_core_repr"


def no_name_scope(method: F) -> F:
    """Marks a method to run in the caller's name scope instead of the module's.

    Use it for methods that build new modules which should be named where they are
    called (a `transpose()` that returns a fresh module, say).
    """
    setattr(method, _NO_NAME_SCOPE, True)
    return method


def once(fn: F) -> F:
    """Runs `fn` at most once: once per instance for a method, once in all for a function.

    The usual use is lazy variable creation, where sizes come from the first input:

        @once
        def _initialize(self, inputs):
            self.w = tf.Variable(...)

    A call that raises does not count, so the next call tries again. The decorated
    function must return None (its result would be lost on later calls): one that returns
    a value raises `ValueError`, as Sonnet's `snt.once` does.
    """
    params = list(inspect.signature(fn).parameters)
    per_instance = bool(params) and params[0] == "self"
    # A string token, not a fresh object: `copy.deepcopy` keeps strings as they are, so a
    # copied module remembers that its (copied) variables already exist.
    token = f"{fn.__module__}.{fn.__qualname__}#{id(fn)}"
    done_globally = []

    def _check(result):
        if result is not None:
            raise ValueError(f"@once function {fn.__qualname__} returned a value; it must return None")

    if per_instance:

        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            done = self.__dict__.get(_ONCE_DONE)
            if done is not None and token in done:
                return None
            _check(fn(self, *args, **kwargs))
            self.__dict__.setdefault(_ONCE_DONE, set()).add(token)
            return None

    else:

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if done_globally:
                return None
            _check(fn(*args, **kwargs))
            done_globally.append(True)
            return None

    setattr(wrapper, _ONCE_WRAPPED, fn)
    return wrapper  # type: ignore[return-value]


def _in_name_scope(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps an unbound method so that it runs in its module's name scope."""

    @functools.wraps(method)
    def scoped(self, *args, **kwargs):
        # `_name_scope` is an absolute scope ("outer/linear/"), so re-entering it from a
        # nested method or an overriding subclass does not nest it twice.
        with self._name_scope:
            return method(self, *args, **kwargs)

    return scoped


def _scoped_tf_function(fn: tf.types.experimental.PolymorphicFunction) -> Any:
    """Rebuilds a `tf.function` method so that its Python body runs in the module's scope.

    The scope has to be entered inside the traced body: a trace does not inherit the name
    scope of its caller. TensorFlow has no public way to re-wrap a `tf.function`'s Python
    function (Sonnet uses the private `_decorate`), so a new one is made from the public
    attributes of the old: `python_function`, `input_signature` and
    `function_spec.jit_compile`. `autograph`, `reduce_retracing`,
    `experimental_implements`, `experimental_autograph_options` and
    `experimental_attributes` are stored only in private fields, so they take
    `tf.function`'s defaults (see `Module`).
    """
    python_function = fn.python_function
    if getattr(python_function, _NO_NAME_SCOPE, False):
        return fn
    return tf.function(
        _wrap_attribute(python_function),
        input_signature=fn.input_signature,
        jit_compile=fn.function_spec.jit_compile,
    )


def _wrap_attribute(value: Any) -> Any:
    """Returns `value` wrapped to run in the module's name scope, or unchanged."""
    if isinstance(value, property):
        return property(
            *(None if f is None else _wrap_attribute(f) for f in (value.fget, value.fset, value.fdel)),
            doc=value.__doc__,
        )
    if getattr(value, _NO_NAME_SCOPE, False):
        return value
    if isinstance(value, tf.types.experimental.PolymorphicFunction):
        return _scoped_tf_function(value)
    if not inspect.isfunction(value):
        return value  # staticmethod, classmethod, other descriptors
    inner = getattr(value, _ONCE_WRAPPED, None)
    if inner is not None:
        # Put the scope inside `once`, so later calls skip the scope as well as the body.
        return once(_in_name_scope(inner))
    return _in_name_scope(value)


class _ModuleType(type):
    """Runs construction in the module's name scope and records the call for `repr`."""

    def __call__(cls, *args, **kwargs):
        module = cls.__new__(cls, *args, **kwargs)
        try:
            module.__init__(*args, **kwargs)
        finally:
            scope = module.__dict__.pop(_CTOR_SCOPE, None)
            if scope is not None:
                scope.__exit__(*sys.exc_info())
        if "_name_scope" not in module.__dict__:
            raise TypeError(
                f"{cls.__name__}.__init__ did not call the base constructor; start it with super().__init__(name=name)"
            )
        module.__dict__[_REPR] = _constructor_repr(cls, args, kwargs)
        return module


class Module(tf.Module, metaclass=_ModuleType):
    """Base class for modules: a named container of variables, submodules and methods.

    Every method a subclass defines (except dunder methods other than `__call__`,
    static and class methods, and methods marked `@no_name_scope`) runs in the module's
    name scope, and so does the constructor after `super().__init__()`. Variables are
    normally created lazily, on the first call, by a method decorated with `@once`, so
    their shapes come from the input. A module may have several forward methods; they
    share the module's variables.

    `@tf.function` methods run in the scope too: each is rebuilt as a `tf.function`
    whose traces enter it, keeping its `input_signature` and `jit_compile`. Its other
    options (`autograph`, `reduce_retracing`, the `experimental_*` ones) cannot be read
    back through TensorFlow's public API, so they revert to `tf.function`'s defaults; to
    keep them, mark the method `@no_name_scope` (above `@tf.function`) and enter
    `self.name_scope` in its body.

    Args:
      name: the module's name, a valid Python identifier. Defaults to the class name
        in snake_case (`MultiHeadAttention` -> `multi_head_attention`).
    """

    _TF_MODULE_IGNORED_PROPERTIES = tf.Module._TF_MODULE_IGNORED_PROPERTIES | frozenset(
        (_ONCE_DONE, _CTOR_SCOPE, _REPR)
    )

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for key, value in list(vars(cls).items()):
            if key.startswith("__") and key != "__call__":
                continue
            wrapped = _wrap_attribute(value)
            if wrapped is not value:
                setattr(cls, key, wrapped)

    def __init__(self, name: str | None = None):
        super().__init__(name=name)
        scope = self._name_scope
        scope.__enter__()
        # Left open for the rest of the subclass constructor; `_ModuleType` closes it.
        self.__dict__[_CTOR_SCOPE] = scope

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails, so it costs nothing on the hot path.
        if name == "_name_scope":
            raise AttributeError(
                f"{type(self).__name__} used before its base constructor ran; "
                "call super().__init__(name=name) first in __init__"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return self.__dict__.get(_REPR) or f"{type(self).__name__}(name={self.name!r})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001  (arrays and tensors compare element-wise)
        return a is b


@functools.cache
def _signature(cls: type) -> inspect.Signature:
    return inspect.signature(cls.__init__)


def _constructor_repr(cls: type, args: tuple, kwargs: dict) -> str:
    """Spells the constructor call, leaving out arguments equal to their defaults."""
    try:
        bound = _signature(cls).bind(None, *args, **kwargs)
    except TypeError:
        return f"{cls.__name__}(...)"
    parts = []
    for i, (name, value) in enumerate(bound.arguments.items()):
        if i == 0:
            continue  # self
        param = bound.signature.parameters[name]
        if param.kind is param.VAR_POSITIONAL:
            parts.extend(repr(v) for v in value)
        elif param.kind is param.VAR_KEYWORD:
            parts.extend(f"{k}={v!r}" for k, v in value.items())
        elif param.default is param.empty or not _same(value, param.default):
            parts.append(f"{name}={value!r}")
    return f"{cls.__name__}({', '.join(parts)})"
