"""The URL destinations' options checked where they are used, before anything is touched: the secrets in
the environment, the key, host-key and CA files on the disk. Nothing connects (`check-config` runs it)."""

from __future__ import annotations

import os

from json_workflow.routing.remote import SFTP_PORT
from json_workflow.routing.rules import Rule


def problems(routes: tuple[Rule, ...]) -> list[str]:
    """What keeps the URL destinations from working, each naming its key and what was expected."""
    found: list[str] = []
    for i, rule in enumerate(routes):
        endpoint = rule.endpoint
        if endpoint is None:
            continue
        key, shown = f"routes[{i}]", endpoint.shown()
        for option, holds in (("token_env", "the bearer token"), ("password_env", "the password")):
            name = getattr(rule, option)
            if name is not None and not os.environ.get(name):
                found.append(f"{key}.{option}: the environment variable {name} is not set or empty (it holds "
                             f"{holds} for {shown}; set it in the service's environment)")  # fmt: skip
        if endpoint.is_http:
            if rule.ca_file is not None and (trouble := _ca_trouble(rule.ca_file)):
                found.append(f"{key}.ca_file: {trouble}")
            continue
        if rule.key_file is None and rule.password_env is None:
            found.append(f"{key}: expected key_file or password_env, how to log in to {shown}")
        if rule.key_file is not None and (trouble := _key_trouble(rule.key_file, rule.password_env)):
            found.append(f"{key}.key_file: {trouble}")
        if trouble := _host_key_trouble(rule.known_hosts, endpoint.host, endpoint.port or SFTP_PORT):
            found.append(f"{key}.known_hosts: {trouble}")
    return found


def _ca_trouble(path: str) -> str | None:
    import ssl

    try:
        ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        return f"{path} does not exist (expected a PEM file of the CA certificates to trust)"
    except (OSError, ssl.SSLError) as e:
        return f"{path} is not a readable PEM file of CA certificates: {e}"
    return None


def _key_trouble(path: str, password_env: str | None) -> str | None:
    import paramiko

    passphrase = os.environ.get(password_env) if password_env else None
    try:
        paramiko.PKey.from_path(path, password=passphrase.encode() if passphrase else None)  # type: ignore[arg-type]
    except FileNotFoundError:
        return f"{path} does not exist (expected an SSH private key, such as one ssh-keygen makes)"
    except (paramiko.PasswordRequiredException, TypeError):  # TypeError: from cryptography, for an OpenSSH key
        return f"{path} is encrypted: its passphrase is read from password_env, which is not set"
    except (OSError, paramiko.SSHException, ValueError) as e:
        return f"{path} is not a readable SSH private key: {e}"
    return None


def _host_key_trouble(path: str, host: str, port: int) -> str | None:
    import paramiko

    try:
        keys = paramiko.HostKeys(path)
    except FileNotFoundError:
        return f"{path} does not exist (expected the server's host key, as ssh-keyscan prints it)"
    except (OSError, paramiko.SSHException, ValueError) as e:
        return f"{path} is not a readable known_hosts file: {e}"
    name = host if port == SFTP_PORT else f"[{host}]:{port}"
    if keys.lookup(name) is None:
        return f"{path} has no host key for {name}: an unknown host key is never accepted (add it with ssh-keyscan)"
    return None
