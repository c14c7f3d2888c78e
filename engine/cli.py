"""`ra-share`: the novice's command line.

    ra-share invite [--password-file PATH | --password-prompt | --no-password] [--expires 1h]
                    [--view-only] [--name NAME] [--out FILE.rainvite] [--port PORT]
                    [--email ADDRESS ...] [--smtp HOST[:PORT]] [--starttls] [--smtp-user USER]
                    [--smtp-password-file PATH] [--from ADDRESS] [--eml FILE]
    ra-share resend ID [--port PORT] [--out FILE.rainvite] [--email ADDRESS ...] [--smtp …]
                    [the other e-mail options of invite]
    ra-share status [--json]
    ra-share expire --all | ra-share expire ID
    ra-share identity
    ra-share show FILE.rainvite
    ra-share                      (on a desktop: the novice panel, see viewer/novice.py)
    ra-share serve [the invite options] [--invite-out FILE] [--invitation ID] [--bind ADDR]
                   [--monitor N|all] [--max-fps N] [--display :N] [--auto-accept]

Defaults can live in ``ra-share.ini`` in the config directory (``$XDG_CONFIG_HOME/remote-assist``
on Linux); flags win over it::

    [invite]
    name = Alice
    expires = 2h
    port = 5950

    [smtp]
    host = smtp.example.org
    port = 587
    starttls = yes
    user = alice@example.org
    password_file = ~/.config/remote-assist/smtp-password
    from = Alice <alice@example.org>
    cafile = /path/to/ca.pem          (optional: a CA other than the system's)

A mistake the user can make ends with one sentence on stderr and a non-zero exit status:
1 when the command failed, 2 when it was called wrongly.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import functools
import getpass
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NoReturn

from engine.capture import CaptureError, ScreenSource
from engine.control import ControlState
from engine.dirs import config_dir
from engine.identity import Identity, IdentityError, format_fingerprint
from engine.invitations import (
    MAX_FAILED_ATTEMPTS,
    Invitation,
    InvitationState,
    InvitationStore,
    StoreError,
)
from engine.mail import MailError, SmtpSettings, invitation_message, send_message, write_eml
from engine.netaddr import candidate_addresses
from engine.protocol import Permission
from engine.sharer import DEFAULT_PORT, Sharer
from engine.streamer import DEFAULT_MAX_FPS
from engine.terminal import TerminalNovice
from engine.tickets import (
    EXTENSION,
    Address,
    Ticket,
    TicketError,
    describe_time,
    name_problem,
    permission_names,
)

__all__ = ["main"]

CONFIG_FILE = "ra-share.ini"
DEFAULT_EXPIRES = "1h"
MAX_LIFETIME = timedelta(days=30)
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}


class CliError(Exception):
    """A mistake the user can fix; the text is one sentence."""


USER_ERRORS = (CliError, TicketError, StoreError, IdentityError, MailError, CaptureError)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, as every other error here; the usage is one --help away.
        self.exit(2, f"{self.prog}: {message}; see {self.prog} --help\n")


def parse_duration(text: str) -> timedelta:
    """'30m', '2h', '1d' as a timedelta between one minute and thirty days."""
    match = re.fullmatch(r"\s*(\d{1,6})\s*([mhd])\s*", text)
    if not match:
        raise CliError(f"cannot read the duration {text!r}; write it like 30m, 2h or 1d")
    lifetime = int(match[1]) * _UNITS[match[2]]
    if not timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
        raise CliError(f"an invitation lasts from one minute to 30 days, not {text.strip()}")
    return lifetime


def describe_duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds <= 0:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def parse_port(text: str, what: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise CliError(f"{what} must be a port number from 1 to 65535, not {text!r}")
    return int(text)


def _port_argument(text: str) -> int:
    try:
        return parse_port(text, "the port")
    except CliError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """HOST, HOST:PORT or [IPv6]:PORT."""
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", text.strip())
    if not match:
        raise CliError(f"cannot read the server {text!r}; write it as HOST:PORT")
    host = match[1] or match[3]
    port = match[2] or match[4]
    return host, parse_port(port, "the SMTP port") if port else default_port


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


def load_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    path = config_path()
    try:
        config.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        message = str(exc).replace("\n", " ")
        raise CliError(f"cannot read the settings in {path} ({message}); fix or remove "
                       "the file") from None
    return config


def _section(config: configparser.ConfigParser, name: str) -> Mapping[str, str]:
    return config[name] if config.has_section(name) else {}


def read_secret_file(path: str, what: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read the {what} file {path}: "
                       f"{getattr(exc, 'strerror', None) or exc}") from None
    secret = text.splitlines()[0] if text else ""
    if not secret:
        raise CliError(f"the {what} file {path} is empty; put the {what} on its first line")
    return secret


def choose_password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if args.password_file:
        return read_secret_file(args.password_file, "password")
    if not args.password_prompt and not sys.stdin.isatty():
        raise CliError("say how to protect the invitation: --password-prompt, "
                       "--password-file PATH or --no-password")
    password = getpass.getpass("Password for the invitation: ")
    if not password:
        raise CliError("the password is empty; type one, or use --no-password")
    if getpass.getpass("The same password again: ") != password:
        raise CliError("the two passwords differ; run the command again")
    return password


def default_name() -> str:
    user = getpass.getuser()
    try:
        import pwd

        full = pwd.getpwnam(user).pw_gecos.split(",")[0].strip()
    except (ImportError, KeyError):
        full = ""
    return full or user


def smtp_settings(args: argparse.Namespace, config: configparser.ConfigParser) -> SmtpSettings:
    section = _section(config, "smtp")
    where = args.smtp or section.get("host", "")
    if not where:
        raise CliError(f"say which mail server sends the invitation: --smtp HOST:PORT, or host "
                       f"in the [smtp] section of {config_path()}; or write the message with "
                       "--eml FILE for your mail client")
    host, port = parse_host_port(where, 25)
    if not args.smtp and "port" in section:
        port = parse_port(section["port"], "the SMTP port")
    try:
        starttls = args.starttls or config.getboolean("smtp", "starttls", fallback=False)
    except ValueError:
        raise CliError(f"starttls in {config_path()} must be yes or no") from None
    username = args.smtp_user or section.get("user")
    password_file = args.smtp_password_file or section.get("password_file")
    password = None
    if username:
        if password_file:
            password = read_secret_file(password_file, "SMTP password")
        elif sys.stdin.isatty():
            password = getpass.getpass(f"SMTP password for {username}: ")
        else:
            raise CliError("the SMTP login needs a password: --smtp-password-file PATH, or "
                           f"password_file in the [smtp] section of {config_path()}")
    return SmtpSettings(host=host, port=port, starttls=starttls, username=username,
                        password=password, cafile=section.get("cafile"))


def make_invitation(args: argparse.Namespace, out: str | None,
                    addresses: list[Address] | None = None) -> tuple[Ticket, Path]:
    """Create an invitation from the invite options, save its ticket, and say so."""
    defaults = _section(load_config(), "invite")
    name = invitation_name(args, defaults)
    lifetime = parse_duration(args.expires or defaults.get("expires", DEFAULT_EXPIRES))
    port = invitation_port(args, defaults)
    # Everything that can go wrong is checked before the invitation exists.
    password = choose_password(args)
    identity = Identity.load_or_create()
    permissions = Permission.VIEW if args.view_only else Permission.VIEW | Permission.CONTROL

    with InvitationStore() as store:
        ticket = store.create(name=name, addresses=addresses or candidate_addresses(port),
                              fingerprint=identity.fingerprint, lifetime=lifetime,
                              password=password, permissions=permissions)
    path = save_ticket(ticket, out)
    if password is None:
        print("ra-share: warning: this invitation has no password, so anyone who gets the file "
              "can ask to connect (you are still asked to accept)", file=sys.stderr)
    return ticket, path


def invitation_name(args: argparse.Namespace, defaults: Mapping[str, str]) -> str:
    """The novice's name from --name, else the [invite] section, else the account's."""
    name = str(args.name or defaults.get("name") or default_name())
    problem = name_problem(name)
    if problem:
        raise CliError(f"{problem}; {name!r} will not do")
    return name


def invitation_port(args: argparse.Namespace, defaults: Mapping[str, str]) -> int:
    """The port from --port, else the [invite] section, else the default."""
    return int(args.port or parse_port(defaults.get("port", str(DEFAULT_PORT)), "the port"))


def novice_defaults() -> tuple[str, int]:
    """The novice's name and port from the config file (or the account and the default port),
    for the novice panel, which `ra-share` opens when run without a command on a desktop."""
    defaults = _section(load_config(), "invite")
    bare = argparse.Namespace(name=None, port=None)
    return invitation_name(bare, defaults), invitation_port(bare, defaults)


def save_ticket(ticket: Ticket, out: str | None) -> Path:
    """Write the ticket's file to `out` (default: invitation-ID.rainvite here) and say so."""
    path = Path(out or f"invitation-{ticket.id_hex[:8]}{EXTENSION}")
    try:
        ticket.save(path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"Invitation {ticket.id_hex} from {ticket.name} saved to {path}; it expires at "
          f"{describe_time(ticket.expires)} and allows "
          f"{' and '.join(permission_names(ticket.permissions))}.", flush=True)
    return path


def mail_settings(args: argparse.Namespace) -> tuple[SmtpSettings | None, str]:
    """The mail server (None unless --email) and the sender address for the delivery options,
    checked before anything is made or written."""
    config = load_config()
    smtp = smtp_settings(args, config) if args.email else None
    sender = args.sender or _section(config, "smtp").get("from") or (
        f"{getpass.getuser()}@{socket.getfqdn()}")
    return smtp, sender


def mail_ticket(args: argparse.Namespace, ticket: Ticket, path: Path,
                smtp: SmtpSettings | None, sender: str) -> None:
    """Send the ticket's file by e-mail (--email) and write the message (--eml), as asked."""
    if not (args.email or args.eml):
        return
    message = invitation_message(ticket, sender=sender, recipients=args.email or [],
                                 filename=path.name)
    if args.eml:
        write_eml(message, args.eml)
        print(f"E-mail message written to {args.eml}.")
    if smtp is not None:
        send_message(message, smtp)
        print(f"Sent to {', '.join(args.email)} through {smtp}.")


def cmd_invite(args: argparse.Namespace) -> int:
    smtp, sender = mail_settings(args)
    ticket, out = make_invitation(args, args.out)
    mail_ticket(args, ticket, out, smtp, sender)
    return 0


def cmd_resend(args: argparse.Namespace) -> int:
    """Write an open invitation's file again, and e-mail it, with today's addresses."""
    smtp, sender = mail_settings(args)
    port = invitation_port(args, _section(load_config(), "invite"))
    fingerprint = Identity.load_or_create().fingerprint
    with InvitationStore() as store:
        ticket = store.ticket(store.resolve(args.id), addresses=candidate_addresses(port),
                              fingerprint=fingerprint)
    mail_ticket(args, ticket, save_ticket(ticket, args.out), smtp, sender)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Share this screen: serve an invitation, ask before anyone sees it, then stream."""
    display = args.display or os.environ.get("DISPLAY")
    if not display:
        raise CliError("there is no display to share: run this inside your desktop session, "
                       "or name one with --display :N")
    defaults = _section(load_config(), "invite")
    port = invitation_port(args, defaults)
    bind = args.bind
    invite: Callable[[], object] | None = None
    if args.invitation:
        with InvitationStore() as store:
            invitation = store.get(store.resolve(args.invitation))
        if invitation.state is not InvitationState.OPEN:
            raise CliError(f"invitation {invitation.id_hex} is {invitation.state.value}; make "
                           "a new one (leave out --invitation)")
        name = invitation.name
    else:
        name = invitation_name(args, defaults)
        own = [Address(host=bind, port=port)] if bind and bind not in ("0.0.0.0", "::") else None
        invite = functools.partial(make_invitation, args, args.invite_out, own)
    monitor = 0 if args.monitor == "all" else int(args.monitor)
    if args.auto_accept:
        print("ra-share: warning: --auto-accept lets whoever holds the invitation (and its "
              "password) see your screen without asking you", file=sys.stderr)
    novice = TerminalNovice(auto_accept=args.auto_accept)
    return asyncio.run(_serve(novice, name, display, monitor, bind, port, args.max_fps, invite))


async def _serve(novice: TerminalNovice, name: str, display: str, monitor: int,
                 bind: str | None, port: int, max_fps: float,
                 invite: Callable[[], object] | None) -> int:
    """Listen first, then make the invitation (`invite`): a busy port wastes no invitation."""
    with InvitationStore() as store:
        sharer = Sharer(identity=Identity.load_or_create(), store=store, name=name,
                        events=novice, source=lambda: ScreenSource(display, monitor),
                        display=display, max_fps=max_fps)
        try:
            await sharer.start(bind, port)
        except OSError as exc:
            raise CliError(f"cannot listen on port {port}: {exc.strerror or exc}; choose "
                           "another with --port") from None
        try:
            if invite is not None:
                invite()
        except BaseException:
            await sharer.close()
            raise
        stopped = asyncio.Event()
        tasks: set[asyncio.Task[object]] = set()

        def spawn(coroutine: Coroutine[Any, Any, object]) -> None:
            task = asyncio.ensure_future(coroutine)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        novice.on_chat = lambda text: spawn(sharer.send_chat(text))
        novice.on_stop = sharer.stop_control
        novice.on_end = lambda: spawn(sharer.end_session())
        novice.on_quit = stopped.set
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            # Ctrl+C in this terminal: first it takes control back, as on the desktop.
            if sharer.handover is not None and sharer.handover.state is ControlState.CONTROLLED:
                sharer.stop_control(f"{name} pressed Ctrl+C")
            else:
                stopped.set()

        loop.add_signal_handler(signal.SIGINT, interrupted)
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        novice.start()
        novice.say(f"Sharing {display} on port {sharer.port}; waiting for the expert. "
                   "Ctrl+C or /quit stops sharing.")
        try:
            await stopped.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await sharer.close()
        novice.say("Stopped sharing.")
    return 0


def _status_record(invitation: Invitation, now: datetime) -> dict[str, object]:
    return {
        "id": invitation.id_hex,
        "name": invitation.name,
        "state": invitation.state.value,
        "created": _iso(invitation.created),
        "expires": _iso(invitation.expires),
        "seconds_left": int(invitation.time_left(now).total_seconds()),
        "failed_attempts": invitation.failed_attempts,
        "password": invitation.password,
        "permissions": permission_names(invitation.permissions),
    }


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_status(args: argparse.Namespace) -> int:
    with InvitationStore() as store:
        invitations = store.invitations()
        now = store.clock()
    if args.json:
        print(json.dumps([_status_record(i, now) for i in invitations], indent=2))
        return 0
    if not invitations:
        print("No invitations yet; `ra-share invite` makes one.")
        return 0
    print(f"{'ID':32}  {'STATE':8}  {'EXPIRES (UTC)':16}  {'LEFT':7}  TRIES  ALLOWS")
    for i in invitations:
        print(f"{i.id_hex:32}  {i.state.value:8}  {i.expires:%Y-%m-%d %H:%M}  "
              f"{describe_duration(i.time_left(now)):7}  "
              f"{i.failed_attempts}/{MAX_FAILED_ATTEMPTS}    "
              f"{', '.join(permission_names(i.permissions))}")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    with InvitationStore() as store:
        if args.all:
            count = store.expire_all()
            print(f"Ended {count} open invitation{'s' if count != 1 else ''}.")
            return 0
        ticket_id = store.resolve(args.id)
        if store.expire(ticket_id):
            print(f"Ended invitation {ticket_id.hex()}.")
        else:
            state = store.get(ticket_id).state.value
            print(f"Invitation {ticket_id.hex()} was already {state}.")
    return 0


def cmd_identity(args: argparse.Namespace) -> int:
    identity = Identity.load_or_create()
    print(f"Certificate fingerprint (SHA-256): {format_fingerprint(identity.fingerprint)}")
    print(f"Identity file: {identity.path}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    ticket = Ticket.load(args.file)
    now = datetime.now(timezone.utc)
    expired = " (expired)" if ticket.expires <= now else ""
    print(f"Invitation {ticket.id_hex} from {ticket.name}")
    print(f"  expires:     {describe_time(ticket.expires, now)}{expired}")
    print(f"  password:    {'yes' if ticket.password else 'none'}")
    print(f"  allows:      {', '.join(permission_names(ticket.permissions))}")
    print(f"  addresses:   {', '.join(map(str, ticket.addresses))}")
    print(f"  fingerprint: {format_fingerprint(ticket.fingerprint)}")
    return 0


def _invitation_arguments(parser: argparse.ArgumentParser) -> None:
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--password-file", metavar="PATH",
                        help="read the password from the first line of PATH")
    secret.add_argument("--password-prompt", action="store_true",
                        help="type the password (the default on a terminal)")
    secret.add_argument("--no-password", action="store_true",
                        help="no password: anyone with the file may ask to connect")
    parser.add_argument("--expires", metavar="DURATION",
                        help=f"how long it stays open: 30m, 2h, 1d (default {DEFAULT_EXPIRES})")
    parser.add_argument("--view-only", action="store_true",
                        help="the expert may watch but never ask for control")
    parser.add_argument("--name", help="your name as the expert will see it")
    _port_option(parser)


def _port_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=_port_argument, metavar="PORT",
                        help=f"the port ra-share listens on (default {DEFAULT_PORT})")


def _delivery_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="FILE", help=f"where to write the {EXTENSION} file "
                        f"(default: invitation-ID{EXTENSION} in this directory)")
    parser.add_argument("--email", nargs="+", metavar="ADDRESS", help="send it by e-mail")
    parser.add_argument("--smtp", metavar="HOST:PORT", help="the mail server to send through")
    parser.add_argument("--starttls", action="store_true", help="encrypt with STARTTLS")
    parser.add_argument("--smtp-user", metavar="USER", help="log in to the mail server")
    parser.add_argument("--smtp-password-file", metavar="PATH",
                        help="the mail server password, first line of PATH")
    parser.add_argument("--from", dest="sender", metavar="ADDRESS", help="the sender address")
    parser.add_argument("--eml", metavar="FILE", help="write the e-mail to FILE (.eml)")


def _monitor_argument(text: str) -> str:
    if text != "all" and not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"--monitor takes 1, 2, … or all, not {text!r}")
    return text


def _fps_argument(text: str) -> float:
    try:
        fps = float(text)
    except ValueError:
        fps = 0.0
    if not 0 < fps <= 240:
        raise argparse.ArgumentTypeError(f"--max-fps takes a rate from 1 to 240, not {text!r}")
    return fps


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(prog="ra-share", description="Ask for remote assistance: make and "
                             "manage invitations for an expert.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    invite = commands.add_parser("invite", help="make an invitation file (and e-mail it)")
    _invitation_arguments(invite)
    _delivery_arguments(invite)
    invite.set_defaults(run=cmd_invite)

    resend = commands.add_parser("resend", help="write an open invitation's file again (and "
                                 "e-mail it), with this computer's addresses as of now")
    resend.add_argument("id", metavar="ID", help="the invitation (or its first digits)")
    _port_option(resend)
    _delivery_arguments(resend)
    resend.set_defaults(run=cmd_resend)

    serve = commands.add_parser("serve", help="share this screen with the expert an invitation "
                                "names (makes the invitation unless --invitation)")
    _invitation_arguments(serve)
    serve.add_argument("--invite-out", metavar="FILE", help=f"where to write the {EXTENSION} "
                       f"file (default: invitation-ID{EXTENSION} in this directory)")
    serve.add_argument("--invitation", metavar="ID",
                       help="serve an existing open invitation instead of making one")
    serve.add_argument("--bind", metavar="ADDR", help="listen on this address only")
    serve.add_argument("--display", metavar=":N", help="the X display to share ($DISPLAY)")
    serve.add_argument("--monitor", default="all", metavar="N|all",
                       type=_monitor_argument, help="one monitor (1, 2, …) or all (default)")
    serve.add_argument("--max-fps", type=_fps_argument, default=DEFAULT_MAX_FPS, metavar="N",
                       help=f"frame-rate cap (default {DEFAULT_MAX_FPS})")
    serve.add_argument("--auto-accept", action="store_true",
                       help="let the expert in without asking (for scripts and benchmarks)")
    serve.set_defaults(run=cmd_serve)

    status = commands.add_parser("status", help="list invitations and their state")
    status.add_argument("--json", action="store_true", help="as JSON")
    status.set_defaults(run=cmd_status)

    expire = commands.add_parser("expire", help="end invitations now")
    which = expire.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every open invitation")
    which.add_argument("id", nargs="?", metavar="ID", help="one invitation (or its first digits)")
    expire.set_defaults(run=cmd_expire)

    identity = commands.add_parser("identity", help="show this computer's certificate fingerprint")
    identity.set_defaults(run=cmd_identity)

    show = commands.add_parser("show", help="check an invitation file and show what it offers")
    show.add_argument("file", metavar=f"FILE{EXTENSION}")
    show.set_defaults(run=cmd_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except USER_ERRORS as exc:
        print(f"ra-share: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ra-share: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
