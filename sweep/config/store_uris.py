"""The two store URIs a sweep names, checked before anything starts: MLflow's tracking URI and Optuna's storage.

A URI that MLflow or SQLAlchemy would only refuse later (after Ray has started, or with a traceback from
`sweep report`) is refused here with one line naming the field:

* a scheme neither store knows (`bogus://x`, `not a uri`); for MLflow also a plain folder or `file:` URI (the
  file store: this project writes to sqlite or a tracking server, and reads only those back);
* `sqlite://rel.db` (two slashes: SQLAlchemy reads the host part as empty and the path as `rel.db`, by
  accident) instead of `sqlite:///PATH`;
* an http(s) URI without a host;
* where the store is about to be used (`sweep run`/`resume` before Ray starts, `sweep report`), a database URL
  (`postgresql://`, `mysql://`, ...) whose driver is not installed: SQLAlchemy imports the driver when it
  builds an engine, which connects to nothing, so this costs no network.
"""

from __future__ import annotations

from urllib.parse import urlparse

from search_spaces.errors import ConfigError
from sweep.core.secrets import redact_uri

_DATABASES = ("postgresql", "mysql", "mariadb", "mssql", "oracle")


def check_tracking_uri(uri: str, field: str, need_driver: bool = False) -> str:
    """`uri` if MLflow can track to it (module docstring), else a ConfigError on `field`. `need_driver`: also
    that a database URL's driver is installed here (only where the store is about to be used: a config is
    also read on machines that never open its stores, e.g. a laptop that submits to a cluster)."""
    if uri == "databricks" or uri.startswith("databricks://"):
        return uri
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        if not urlparse(uri).hostname:
            raise ConfigError(field, f"{uri!r} names no host (expected e.g. http://127.0.0.1:5000)")
        return uri
    if scheme == "sqlite" or scheme in _DATABASES or scheme.split("+")[0] in _DATABASES:
        return check_database_url(uri, field, need_driver)
    raise ConfigError(field, f"expected sqlite:///PATH, http(s)://HOST[:PORT], a database URL (postgresql://...) "
                             f"or databricks, got {uri!r}")


def check_database_url(url: str, field: str, need_driver: bool = False) -> str:
    """`url` if it is an SQLAlchemy database URL (with `need_driver`: whose driver is installed here), else a
    ConfigError on `field`."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or url == "sqlite:///":
            raise ConfigError(field, f"{url!r}: a sqlite URL needs three slashes and a path: sqlite:///PATH "
                                     "(four for an absolute path: sqlite:////abs/path)")
        return url
    if scheme.split("+")[0] not in _DATABASES:
        raise ConfigError(field, f"expected a database URL like sqlite:///study.db or postgresql://HOST/DB, "
                                 f"got {redact_uri(url)!r}")
    if not need_driver:
        return url
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        sqlalchemy.create_engine(url)  # imports the driver; connects to nothing
    except (ModuleNotFoundError, ImportError) as err:
        raise ConfigError(field, f"{redact_uri(url)}: its database driver is not installed ({err.name or err}); "
                                 "install it, e.g. pip install psycopg2-binary for postgresql") from None
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise ConfigError(field, f"{redact_uri(url)} is not a database URL SQLAlchemy can use: "
                                 f"{str(err).splitlines()[0]}") from None
    return url


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""
