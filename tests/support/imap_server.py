"""A tiny IMAP4rev1 server on loopback with just what `newsletter bounces fetch` uses (LOGIN, SELECT, SEARCH
UNSEEN, FETCH RFC822, STORE +FLAGS, LOGOUT), so the real imaplib client is tested over a real socket."""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field


@dataclass
class Mailbox:
    user: str
    password: str
    messages: list[bytes] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    logins: int = 0


def make_handler(box: Mailbox) -> type[socketserver.StreamRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def reply(self, text: str) -> None:
            self.wfile.write(text.encode() + b"\r\n")

        def handle(self) -> None:
            self.reply("* OK IMAP4rev1 test server ready")
            authed = False
            while line := self.rfile.readline():
                tag, _, rest = line.decode().strip().partition(" ")
                command, _, args = rest.partition(" ")
                command = command.upper()
                if command == "CAPABILITY":
                    self.reply("* CAPABILITY IMAP4rev1")
                elif command == "LOGIN":
                    user, password = (a.strip('"') for a in args.split(" ", 1))
                    if (user, password) != (box.user, box.password):
                        self.reply(f"{tag} NO [AUTHENTICATIONFAILED] invalid credentials")
                        continue
                    authed = True
                    box.logins += 1
                elif not authed and command != "LOGOUT":
                    self.reply(f"{tag} BAD not authenticated")
                    continue
                elif command == "SELECT":
                    self.reply(f"* {len(box.messages)} EXISTS")
                    self.reply(f"{tag} OK [READ-WRITE] SELECT completed")
                    continue
                elif command == "SEARCH":
                    unseen = [str(i + 1) for i in range(len(box.messages)) if i + 1 not in box.seen]
                    self.reply("* SEARCH " + " ".join(unseen))
                elif command == "FETCH":
                    number = int(args.split(" ", 1)[0])
                    data = box.messages[number - 1]
                    self.wfile.write(f"* {number} FETCH (RFC822 {{{len(data)}}}\r\n".encode() + data + b")\r\n")
                elif command == "STORE":
                    number = int(args.split(" ", 1)[0])
                    box.seen.add(number)
                    self.reply(f"* {number} FETCH (FLAGS (\\Seen))")
                elif command == "LOGOUT":
                    self.reply("* BYE logging out")
                    self.reply(f"{tag} OK LOGOUT completed")
                    return
                else:
                    self.reply(f"{tag} BAD unknown command")
                    continue
                self.reply(f"{tag} OK {command} completed")

    return Handler


class IMAPServer:
    def __init__(self, box: Mailbox) -> None:
        self.box = box
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), make_handler(box))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> IMAPServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
