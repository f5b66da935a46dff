"""A web server standing in for a user's notebook server: answers every path with one line.

Usage: python standin_server.py PORT USERNAME IMAGE
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, username, image = int(sys.argv[1]), sys.argv[2], sys.argv[3]
text = f"Stand-in notebook server for {username}, image {image}\n".encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format, *args):
        pass  # the hub logs the requests that matter


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
