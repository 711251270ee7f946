"""TLS settings for polyfuse's HTTP calls, with httpx's meaning of ``verify`` and ``cert``."""

from __future__ import annotations

import os
import ssl
from typing import Union

__all__ = ["CertTypes", "VerifyTypes", "ssl_context"]

VerifyTypes = Union[bool, str, "os.PathLike[str]", ssl.SSLContext]
"""``True`` (verify with the default CA bundle), ``False`` (do not verify), a CA bundle file
or directory, or a ready :class:`ssl.SSLContext`."""

CertTypes = Union[str, "os.PathLike[str]", tuple[str, str], tuple[str, str, str]]
"""A client certificate: a PEM file holding certificate and key, ``(certfile, keyfile)``, or
``(certfile, keyfile, password)``."""


def ssl_context(
    verify: VerifyTypes = True, cert: CertTypes | None = None, *, trust_env: bool = True
) -> ssl.SSLContext:
    """The :class:`ssl.SSLContext` for ``verify`` and ``cert``, as httpx builds it.

    ``verify=True`` trusts ``SSL_CERT_FILE`` or, failing that, ``SSL_CERT_DIR`` when
    ``trust_env`` is set and they are, else certifi's CA bundle. A path is a CA bundle file or a
    directory of hashed certificates. ``False`` turns verification off (hostname too).

    Raises:
        ValueError: a CA bundle or certificate file cannot be read (the message names it).
    """
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        cafile = os.environ.get("SSL_CERT_FILE") if trust_env else None
        capath = os.environ.get("SSL_CERT_DIR") if trust_env else None
        if cafile:
            context = _load(cafile=cafile)
        elif capath:
            context = _load(capath=capath)
        else:
            import certifi

            context = _load(cafile=certifi.where())
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        path = os.fspath(verify)
        context = _load(capath=path) if os.path.isdir(path) else _load(cafile=path)
    if cert is not None:
        parts = (os.fspath(cert),) if isinstance(cert, (str, os.PathLike)) else cert
        try:
            context.load_cert_chain(*parts)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"cannot load the client certificate {parts[0]!r}: {exc}; pass a PEM file "
                "(or a (certfile, keyfile[, password]) tuple)"
            ) from None
    return context


def _load(*, cafile: str | None = None, capath: str | None = None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=cafile, capath=capath)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"cannot read the CA bundle {cafile or capath!r}: {exc}; pass verify= a PEM file, "
            "a directory of certificates, an ssl.SSLContext, or True"
        ) from None
