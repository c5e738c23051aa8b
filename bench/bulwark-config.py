# Adjusts a fresh `bulwark init` configuration for bench/run.sh: only limits, the
# relay connector to the sink, and no traffic off the machine. Usage:
#   python3 bench/bulwark-config.py DIR/bulwark.toml IMAPS_PER_IP_LIMIT SINK_PORT
import re, sys
path, idle, sink = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read()

def set_key(text, section, key, value):
    """Sets key = value in [section], replacing an existing line of that key."""
    m = re.search(r"^\[%s\]\n" % re.escape(section), text, re.M)
    if not m:
        return text
    nxt = re.search(r"^\[", text[m.end():], re.M)
    end = m.end() + nxt.start() if nxt else len(text)
    body = text[m.end():end]
    line = "%s = %s\n" % (key, value)
    if re.search(r"^%s\s*=" % key, body, re.M):
        body = re.sub(r"^%s\s*=.*\n" % key, line, body, flags=re.M)
    else:
        body = line + body
    return text[:m.end()] + body + text[end:]

for name, limit in (("imaps", idle), ("smtp", 200), ("submission", 200), ("pop3s", 200)):
    text = set_key(text, "listeners." + name, "max_connections_per_ip", limit)
# Nothing may leave the machine: DNS goes to loopback (where nothing answers, so a
# lookup fails at once), and the sender checks of port 25 are off: the reference does
# none either, so both servers do the same work per message.
text = set_key(text, "dns", "resolvers", '["127.0.0.1:53"]')
if "[senderauth.dkim]" in text:  # the checks exist (issue 7)
    text = set_key(text, "senderauth", "enabled", "false")
# The relay scenario's remote side: the load generator's sink on loopback.
if "max_concurrent_deliveries" in text:  # outbound connectors exist (issue 6)
    text += """
[[outbound.connector]]
name = "bench-sink"
address_space = ["sink.test"]
smart_host = "127.0.0.1"
port = %s
tls = "opportunistic"
""" % sink
open(path, "w").write(text)
