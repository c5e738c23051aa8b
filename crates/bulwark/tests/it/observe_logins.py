# Real logins on every protocol listener given, with Python's standard library.
# argv: user password cafile name=port... (submission, submissions, imap, imaps, pop3,
# pop3s). Prints one line per login; any failure raises.
import base64, imaplib, poplib, smtplib, ssl, sys

user, pw, cafile = sys.argv[1:4]
ports = dict(a.split("=") for a in sys.argv[4:])
host = "127.0.0.1"
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # connecting to 127.0.0.1; the chain is still verified
blob = b"\0" + user.encode() + b"\0" + pw.encode()
plain = base64.b64encode(blob).decode()

def smtp(name):
    if name == "submission":
        s = smtplib.SMTP(host, int(ports[name]), timeout=30)
        s.ehlo(); s.starttls(context=ctx)
    else:
        s = smtplib.SMTP_SSL(host, int(ports[name]), context=ctx, timeout=30)
    s.ehlo()
    s.user, s.password = user, pw
    return s

for name in ("submission", "submissions"):
    if name in ports:
        for mech in ("PLAIN", "LOGIN"):
            for initial in (True, False):
                s = smtp(name)
                obj = s.auth_plain if mech == "PLAIN" else s.auth_login
                code, _ = s.auth(mech, obj, initial_response_ok=initial)
                assert code == 235, (name, mech, initial, code)
                s.quit()
                print(f"{name} AUTH {mech} initial={initial}")

def imap(name):
    if name == "imap":
        m = imaplib.IMAP4(host, int(ports[name]), timeout=30)
        m.starttls(ssl_context=ctx)
    else:
        m = imaplib.IMAP4_SSL(host, int(ports[name]), ssl_context=ctx, timeout=30)
    return m

for name in ("imap", "imaps"):
    if name in ports:
        m = imap(name); m.login(user, pw); m.logout()
        print(f"{name} LOGIN")
        m = imap(name); m.authenticate("PLAIN", lambda _: blob); m.logout()
        print(f"{name} AUTHENTICATE PLAIN")

def pop(name):
    if name == "pop3":
        p = poplib.POP3(host, int(ports[name]), timeout=30)
        p.stls(context=ctx)
    else:
        p = poplib.POP3_SSL(host, int(ports[name]), context=ctx, timeout=30)
    return p

for name in ("pop3", "pop3s"):
    if name in ports:
        p = pop(name); p.user(user); p.pass_(pw); p.quit()
        print(f"{name} USER/PASS")
        p = pop(name); r = p._shortcmd("AUTH PLAIN " + plain); p.quit()
        print(f"{name} AUTH PLAIN initial")
        p = pop(name); p._putcmd("AUTH PLAIN"); r = p._getline()[0]
        assert r.startswith(b"+"), r
        p._putcmd(plain); r = p._getresp(); p.quit()
        print(f"{name} AUTH PLAIN continuation")

# IMAP forms imaplib does not use: LOGIN with synchronizing and non-synchronizing
# (LITERAL+) literals, and AUTHENTICATE with the initial response on the command line
# (SASL-IR). Raw over implicit TLS.
import socket

def raw_imaps():
    s = ctx.wrap_socket(socket.create_connection((host, int(ports["imaps"])), timeout=30))
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    return s, f

def until_tagged(f, tag):
    while True:
        l = f.readline()
        assert l, "closed"
        if l.startswith(tag + b" "):
            return l

if "imaps" in ports:
    u, p = user.encode(), pw.encode()
    s, f = raw_imaps()
    s.sendall(b"x1 LOGIN {%d}\r\n" % len(u))
    assert f.readline().startswith(b"+")
    s.sendall(u + b" {%d}\r\n" % len(p))
    assert f.readline().startswith(b"+")
    s.sendall(p + b"\r\n")
    assert until_tagged(f, b"x1").startswith(b"x1 OK"), "literal LOGIN"
    s.close()
    print("imaps LOGIN literals")
    s, f = raw_imaps()
    s.sendall(b"x2 LOGIN {%d+}\r\n" % len(u) + u + b" {%d+}\r\n" % len(p) + p + b"\r\n")
    assert until_tagged(f, b"x2").startswith(b"x2 OK"), "LITERAL+ LOGIN"
    s.close()
    print("imaps LOGIN literal+")
    s, f = raw_imaps()
    s.sendall(b"x3 AUTHENTICATE PLAIN " + plain.encode() + b"\r\n")
    assert until_tagged(f, b"x3").startswith(b"x3 OK"), "SASL-IR"
    s.close()
    print("imaps AUTHENTICATE PLAIN SASL-IR")
