"""A client of thingid's directory on Python's ldap3 (Debian python3-ldap3).

Run by TestDirectoryWithPythonLDAP3; reads its arguments from the
environment and prints one JSON object of what it saw.
"""
import json
import os
import ssl

from ldap3 import EXTERNAL, SASL, Connection, Server, Tls

env = os.environ
ca = env["LDAP_CA"]
out = {}


def tls(cert=None, key=None):
    return Tls(ca_certs_file=ca, validate=ssl.CERT_REQUIRED,
               local_certificate_file=cert, local_private_key_file=key)


# A simple bind over LDAPS, then Who am I?
ldaps = Server(env["LDAPS_URL"], tls=tls(), connect_timeout=10)
conn = Connection(ldaps, user=env["BIND_DN"], password=env["BIND_PASSWORD"], receive_timeout=10)
out["bind"] = conn.bind()
out["bindResult"] = conn.result["description"]
out["whoami"] = conn.extend.standard.who_am_i()

# A paged search (RFC 2696), one entry a page, the cookie handed back
# each time.
pages, uids, cookie = 0, [], None
while True:
    conn.search(env["PEOPLE"], "(objectClass=inetOrgPerson)", attributes=["uid"],
                paged_size=1, paged_cookie=cookie)
    pages += 1
    uids += [str(e.uid) for e in conn.entries]
    cookie = conn.result["controls"]["1.2.840.113556.1.4.319"]["value"]["cookie"]
    if not cookie or pages > 50:
        break
out["pages"], out["uids"] = pages, uids
conn.unbind()

# The same simple bind in clear text is refused.
plain = Connection(Server(env["LDAP_URL"], connect_timeout=10), user=env["BIND_DN"],
                   password=env["BIND_PASSWORD"], receive_timeout=10)
out["clearTextBind"] = plain.bind()
out["clearTextResult"] = plain.result["description"]
plain.unbind()

# SASL EXTERNAL with the thing's certificate, then the thing reads itself.
thing = Server(env["LDAPS_URL"], tls=tls(env["THING_CERT"], env["THING_KEY"]), connect_timeout=10)
conn = Connection(thing, authentication=SASL, sasl_mechanism=EXTERNAL, receive_timeout=10)
out["externalBind"] = conn.bind()
out["externalWhoami"] = conn.extend.standard.who_am_i()
conn.search(env["THING_DN"], "(objectClass=device)", search_scope="BASE", attributes=["serialNumber"])
out["thingSerial"] = [str(e.serialNumber) for e in conn.entries]
conn.unbind()

print(json.dumps(out))
