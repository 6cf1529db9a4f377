"""The local web app (DESIGN §1 S8, §6): the node serves a small browser
app on the loopback interface, so people who do not use a terminal can do
everything the CLI does.

* ``server``   binds loopback sockets itself, writes ``web.json`` and runs
               hypercorn's trio connection handler in the node's trio
               process, in a nursery of its own (a web error never stops
               the node), with connection, request and body caps
* ``guard``    pure ASGI middleware: Host, Origin, Sec-Fetch-Site, the
               session cookie, caps and security headers on every answer
* ``auth``     the web key (``web.key``, 0600), the server's proof of it,
               one-time launch codes and sessions
* ``api``, ``api_account``  JSON endpoints that call the node's services
               directly, in the node's trio loop (never via the control
               socket, never from threads)
* ``live``     a WebSocket hub: stored messages, delivery changes, account
               and link-request changes pushed as they happen
* ``metrics``  a bounded history of the node's counters for the charts
* ``service``  the ``web.*`` control-API namespace (``smu web``)
* ``launch``   what ``smu web`` does on the user's side
* ``static/``  the page: plain HTML, CSS and JavaScript, no build step
"""
