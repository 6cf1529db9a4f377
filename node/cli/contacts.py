"""`smu invite`, `smu contact add|list|ack`, `smu verify`."""

from __future__ import annotations

import argparse

from .. import api
from .common import Command, client, group, out, qr_text, want_qr


def _invite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-qr", action="store_true", help="do not draw the QR code")


def cmd_invite(args: argparse.Namespace) -> int:
    r = api.contact.INVITE_CREATE.ask(client(args), {})
    text = [f"invite for {r['handle']}", f"  code  {r['invite']}", f"  URI   {r['uri']}"]
    if want_qr(args):
        text.append(qr_text(r["uri"]))
    out(args, r, "\n".join(text))
    return 0


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("ref", metavar="INVITE|HANDLE|ACCOUNT_ID")
    p.add_argument("--name", default=None, help="your name for the contact")


def cmd_add(args: argparse.Namespace) -> int:
    r = api.contact.CONTACT_ADD.ask(client(args), {"ref": args.ref, "name": args.name})
    later = "" if r["synced"] else " (its log is not here yet; it will arrive by gossip)"
    out(args, r, f"added {r['name']}: {r['handle']}{later}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    r = api.contact.CONTACT_LIST.ask(client(args), {})
    lines = []
    for x in r["contacts"]:
        mark = "verified" if x["verified"] else "not verified"
        if x.get("blocked"):
            mark += ", blocked"
        known = x["handle"] or "(not synced)"
        lines.append(f"{x['name']:<16} {known:<28} {x['status']:<12} {mark}")
        lines += [f"    ! {change}" for change in x["changes"]]
    out(args, r, "\n".join(lines) or "no contacts")
    return 0


def _contact_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("contact", metavar="CONTACT", help="a contact's name, handle or account id")


def cmd_ack(args: argparse.Namespace) -> int:
    out(
        args, api.contact.CONTACT_ACK.ask(client(args), {"contact": args.contact}), "marked as seen"
    )
    return 0


def _verify_args(p: argparse.ArgumentParser) -> None:
    _contact_arg(p)
    p.add_argument(
        "--confirm",
        action="store_true",
        help="mark the contact verified (after comparing the number in person)",
    )


def cmd_verify(args: argparse.Namespace) -> int:
    r = api.contact.CONTACT_VERIFY.ask(
        client(args), {"contact": args.contact, "confirm": args.confirm}
    )
    n = r["safety_number"].split()
    grid = "\n".join("    " + " ".join(n[i : i + 4]) for i in range(0, 12, 4))
    name = r["contact"]["name"]
    verified = r["contact"]["verified"]
    if args.confirm and verified:
        after = f"marked {name} verified, on all your devices"
    elif args.confirm:
        after = f"{name} is not marked verified: {r['contact']['status']} accounts cannot be"
    elif verified:
        after = "you marked this number verified"
    else:
        after = (
            "compare it with your contact in person or on a call; if it matches, run "
            f"`smu verify {args.contact} --confirm`"
        )
    state = "verified" if verified else "not verified"
    out(args, r, f"safety number with {name} ({state}):\n{grid}\n{after}")
    return 0


COMMANDS = [
    Command(("invite",), "an invite for your account (code, URI, QR)", cmd_invite, _invite_args),
    group(("contact",), "contacts (the same on all your devices)"),
    Command(("contact", "add"), "add a contact", cmd_add, _add_args),
    Command(("contact", "list"), "contacts, with changes to their accounts", cmd_list),
    Command(("contact", "ack"), "mark a contact's changes as seen", cmd_ack, _contact_arg),
    Command(("verify",), "the safety number with a contact", cmd_verify, _verify_args),
]
