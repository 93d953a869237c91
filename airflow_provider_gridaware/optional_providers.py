"""Clear errors when a dispatch module is imported without the extra that brings its Airflow provider.

The Kubernetes and AWS Batch dispatch modules build on the official providers, which are optional
(``pip install 'airflow-provider-gridaware[kubernetes]'`` / ``[aws]``). Without them, a DAG importing our
operators would fail with a bare ``ModuleNotFoundError: airflow.providers.cncf``; this says which extra to
install instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from airflow.exceptions import AirflowOptionalProviderFeatureException

PACKAGE = "airflow-provider-gridaware"


@dataclass(frozen=True)
class OptionalExtra:
    """One optional extra of the package.

    :param name: the extra's name in ``pyproject.toml``.
    :param provides: what it installs, as the error message names it.
    :param modules: the top modules it brings; a missing one (or a submodule of one) means the extra is missing.
    """

    name: str
    provides: str
    modules: tuple[str, ...]

    def brought(self, module: str | None) -> bool:
        """Whether the extra installs ``module``.

        :param module: a dotted module name (``ImportError.name``), or ``None`` when unknown.
        """
        return module is not None and any(module == m or module.startswith(f"{m}.") for m in self.modules)


EXTRAS: dict[str, OptionalExtra] = {
    extra.name: extra
    for extra in (
        OptionalExtra(
            "kubernetes",
            "the official Kubernetes provider",
            ("airflow.providers.cncf", "kubernetes", "kubernetes_asyncio"),
        ),
        OptionalExtra(
            "aws",
            "the Amazon provider",
            ("airflow.providers.amazon", "boto3", "botocore", "aiobotocore"),
        ),
        OptionalExtra("openadr", "openleadr (OpenADR 2.0b)", ("openleadr", "signxml", "apscheduler", "tzlocal")),
        OptionalExtra("ieee2030_5", "envoy-schema (IEEE 2030.5 models)", ("envoy_schema", "pydantic_xml", "lxml")),
    )
}


class MissingExtraError(AirflowOptionalProviderFeatureException, ImportError):
    """A module needs an optional extra that is not installed.

    Airflow skips optional provider features on :class:`AirflowOptionalProviderFeatureException`, and code that
    guards imports with ``except ImportError`` still works.
    """


@contextmanager
def requires_extra(extra: str, feature: str) -> Iterator[None]:
    """Turn a missing module of ``extra`` raised inside the block into a :class:`MissingExtraError`.

    Nested blocks re-label: the outermost names the feature the user imported. Any other import error
    passes unchanged.

    :param extra: the extra's name, a key of :data:`EXTRAS`.
    :param feature: what needs it, e.g. the operator class the DAG imports.
    """
    spec = EXTRAS[extra]
    try:
        yield
    except ImportError as exc:
        if not spec.brought(exc.name):
            raise
        message = f"{feature} needs {spec.provides}: pip install '{PACKAGE}[{spec.name}]' (missing {exc.name})"
        cause = exc.__cause__ if isinstance(exc, MissingExtraError) else exc
        raise MissingExtraError(message, name=exc.name) from cause
