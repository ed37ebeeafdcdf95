"""The lab internet's web server (runs inside the `internet` host).

`/` answers with the address the request came from, so a client can see which address
the internet sees (its own, or its VPN server's).  `/debian/...` serves the lab's Debian
mirror from /srv/mirror.
"""

import http.server
import os
import socket


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory="/srv/mirror", **kwargs)

    def translate_path(self, path):
        if path.startswith("/debian/"):
            return super().translate_path(path[len("/debian"):])
        return super().translate_path("/nonexistent")

    def do_GET(self):
        if self.path.split("?")[0] == "/":
            peer = self.client_address[0].removeprefix("::ffff:")
            body = f"your address: {peer}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


if __name__ == "__main__":
    os.makedirs("/srv/mirror", exist_ok=True)
    Server(("::", 80), Handler).serve_forever()
