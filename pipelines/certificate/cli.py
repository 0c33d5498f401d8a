"""What `remotecal certificate sign|verify` do (SPEC section 2); their parser is remotecal.cli's.

    remotecal certificate sign CERTIFICATE.xml --key KEY.pem --cert CERT.pem
        [--chain CA.pem ...] [--password-file FILE | --password-env NAME] [--out SIGNED.xml]
    remotecal certificate verify CERTIFICATE.xml --trust CA.pem|DIR [--printed FILE ...]
        [--unsigned]

Exits: 0 when signed / every check passed; 1 when a check failed (one line each) or the
certificate cannot be read; 2 when a key, password, certificate or trust store file given is
unusable (one line naming the file).

Nothing heavy is imported until a command runs: every `remotecal` command builds this parser,
and a gateway's start must not wait for lxml, scipy and signxml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["cmd_sign", "cmd_verify"]


def _read(path: Path) -> bytes:
    from pipelines.dcc.common import DccError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise DccError(f"{path}: cannot read the certificate: {exc.strerror or exc}") from None


def _password(args: argparse.Namespace) -> bytes | None:
    from pipelines.dcc.signature import SigningError

    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").splitlines()[0].encode()
        except (OSError, IndexError) as exc:
            raise SigningError(f"{args.password_file}: cannot read the key's password: {exc}") from None
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise SigningError(f"environment variable {args.password_env} (--password-env) is not set")
        return value.encode()
    return None


def cmd_sign(args: argparse.Namespace) -> int:
    from pipelines.dcc import DccError, validate_dcc
    from pipelines.dcc.signature import SigningError, load_signer, sign_dcc

    source = Path(args.certificate)
    try:
        signer = load_signer(Path(args.key), Path(args.cert), _password(args), [Path(p) for p in args.chain])
    except SigningError as exc:
        print(f"remotecal: {exc}", file=sys.stderr)
        return 2
    xml = _read(source)
    validate_dcc(xml)
    signed = sign_dcc(xml, signer)
    validate_dcc(signed)
    out = Path(args.out) if args.out else source
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(signed)
        tmp.replace(out)
    except OSError as exc:
        raise DccError(f"{out}: cannot write the signed certificate: {exc.strerror or exc}") from None
    subject = signer.chain[0].subject.rfc4514_string()
    print(f"signed {out} (XAdES, by {subject})")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from pipelines.certificate.verify import verify_certificate
    from pipelines.dcc.signature import SigningError, load_trust_store

    if args.trust is None and not args.unsigned:
        print("remotecal: give --trust CA.pem (or a folder of CA certificates), or --unsigned",
              file=sys.stderr)
        return 2
    try:
        trust = load_trust_store(Path(args.trust)) if args.trust else None
    except SigningError as exc:
        print(f"remotecal: {exc}", file=sys.stderr)
        return 2
    checks = verify_certificate(_read(Path(args.certificate)), trust_pem=trust,
                                printed=[Path(p) for p in args.printed])
    for check in checks:
        print(check.line())
    return 0 if all(c.ok for c in checks) else 1
