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
