#!/usr/bin/env python3
"""Creates the table and a tenant's secrets in the local stack, and registers the
tenant's integrations (all six platforms unless --providers says fewer) in the
simulator.

Usage: seed.py table
       seed.py tenant ACCOUNT PROJECT ENV --events-url URL --events-secret S \
               --sim-url URL --lambda-url URL [--integration-id ID] \
               [--providers genesys,connect,zendesk,salesforce,nice,webex]
Reads AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SECRETS_MANAGER and TABLE_NAME.
Prints the tenant and the simulator's id of each integration as JSON (no secrets).
"""
import argparse
import json
import os
import secrets
import sys
import urllib.request

import boto3

REGION = os.environ.get("AWS_REGION", "us-east-1")
PREFIX = os.environ.get("SECRET_PREFIX", "chat-handoff")


def create_table(name=None):
    """The relay's table and indexes (template.yaml's layout); bench/ddb_local_ops.py uses it too."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    name = name or os.environ["TABLE_NAME"]
    if name in ddb.list_tables()["TableNames"]:
        return
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": a, "AttributeType": "S"}
            for a in ("pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": index,
                "KeySchema": [{"AttributeName": f"{p}pk", "KeyType": "HASH"}, {"AttributeName": f"{p}sk", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }
            for index, p in (("by_conversation", "gsi1"), ("work", "gsi2"))
        ],
    )
    ddb.get_waiter("table_exists").wait(TableName=name)
    ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})


def put_secret(name, value):
    sm = boto3.client("secretsmanager", region_name=REGION)
    body = json.dumps(value)
    try:
        sm.create_secret(Name=name, SecretString=body)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=name, SecretString=body)


def post_json(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.read()


def token(prefix=""):
    return prefix + secrets.token_hex(8)


def seed_genesys(a, tenant):
    integration_id = a.integration_id or f"int-{a.account}-{secrets.token_hex(4)}"
    client_id, client_secret = token("client-"), secrets.token_urlsafe(24)
    webhook_secret = secrets.token_urlsafe(24)
    webhook_url = f"{a.lambda_url}/lambda-url/inbound-webhook/webhooks/genesys/{tenant}"
    post_json(f"{a.sim_url}/sim/genesys/integrations", {
        "integration_id": integration_id, "client_id": client_id, "client_secret": client_secret,
        "webhook_url": webhook_url, "webhook_secret": webhook_secret, "typing_outbound": True,
    })
    return integration_id, {
        "api_base": f"{a.sim_url}/genesys", "login_base": f"{a.sim_url}/genesys/login",
        "client_id": client_id, "client_secret": client_secret,
        "integration_id": integration_id, "webhook_secret": webhook_secret,
    }


def seed_connect(a, tenant):
    instance, flow = token("inst-"), token("flow-")
    topic = f"arn:aws:sns:{REGION}:123456789012:handoff-{secrets.token_hex(4)}"
    post_json(f"{a.sim_url}/sim/connect/instances", {"instance_id": instance, "contact_flow_ids": [flow]})
    post_json(f"{a.sim_url}/sim/connect/topics", {
        "topic_arn": topic,
        "lambda_invoke_url": f"{a.lambda_url}/2015-03-31/functions/inbound-webhook/invocations",
    })
    return instance, {"instance_id": instance, "contact_flow_id": flow,
                      "streaming_topic_arn": topic, "region": REGION}


def seed_zendesk(a, tenant):
    app, key_id, key_secret = token("app"), token("key-"), secrets.token_urlsafe(24)
    webhook_secret = secrets.token_urlsafe(24)
    post_json(f"{a.sim_url}/sim/zendesk/integrations", {
        "app_id": app, "key_id": key_id, "key_secret": key_secret, "key_scope": "integration",
        "integration_id": token("int-"),
        "webhook_url": f"{a.lambda_url}/lambda-url/inbound-webhook/webhooks/zendesk/{tenant}",
        "webhook_secret": webhook_secret, "switchboard_integration_name": "ai-relay",
        "deliver_standby_events": True,
    })
    return app, {"base_url": f"{a.sim_url}/zendesk/sc", "app_id": app, "key_id": key_id,
                 "key_secret": key_secret, "webhook_secret": webhook_secret,
                 "field_map": {"customer_id": "900001", "reason": "900002"}}


def seed_salesforce(a, tenant):
    # The simulator's test identity key pair (a local-only key, also used by the e2e tests).
    sf = os.path.join(os.path.dirname(os.path.abspath(__file__)), "simulator", "src", "salesforce")
    with open(os.path.join(sf, "test_identity_key.pem")) as f:
        pem = f.read()
    with open(os.path.join(sf, "test_identity_jwks.json")) as f:
        jwks = json.load(f)
    developer_name, org = token("es-"), "00D5g000000abcdEAA"
    post_json(f"{a.sim_url}/sim/salesforce/integrations", {
        "integration_id": developer_name, "org_id": org, "es_developer_name": developer_name,
        "auth_mode": "Auth", "identity_jwks": jwks, "identity_issuer": "relay",
    })
    return developer_name, {"scrt_base_url": f"{a.sim_url}/salesforce", "org_id": org,
                            "es_developer_name": developer_name, "auth_mode": "verified",
                            "identity_issuer": "relay", "identity_key_id": "relay-test-1",
                            "identity_private_key_pem": pem}


def seed_nice(a, tenant):
    channel = token("chat_")
    client_id, client_secret = token("client-"), secrets.token_urlsafe(24)
    key_id, key_secret = token("ak-"), secrets.token_urlsafe(24)
    byoc_client, byoc_secret = token("byoc-"), secrets.token_urlsafe(24)
    post_json(f"{a.sim_url}/sim/nice/integrations", {
        "brand_id": 1234, "channel_id": channel, "client_id": client_id, "client_secret": client_secret,
        "access_key_id": key_id, "access_key_secret": key_secret,
        "callback_base_url": f"{a.lambda_url}/lambda-url/inbound-webhook/webhooks/nice/{tenant}",
        "byoc_client_id": byoc_client, "byoc_client_secret": byoc_secret,
    })
    return channel, {"brand_id": 1234, "channel_id": channel, "environment": "na1",
                     "base_url": f"{a.sim_url}/nice", "client_id": client_id,
                     "client_secret": client_secret, "access_key_id": key_id,
                     "access_key_secret": key_secret, "byoc_client_id": byoc_client,
                     "byoc_client_secret": byoc_secret}


def seed_webex(a, tenant):
    org, client_id, client_secret = token("org-"), token("client-"), secrets.token_urlsafe(24)
    refresh, address = token("rt-"), f"support@{token()}.example"
    webhook_secret = secrets.token_urlsafe(24)
    post_json(f"{a.sim_url}/sim/webex/integrations", {
        "org_id": org, "client_id": client_id, "client_secret": client_secret,
        "refresh_token": refresh, "business_address": address, "channel_name": "ai-handoff",
        "webhook_url": f"{a.lambda_url}/lambda-url/inbound-webhook/webhooks/webex/{tenant}",
        "webhook_secret": webhook_secret,
    })
    return org, {"api_base_url": f"{a.sim_url}/webex", "identity_base_url": f"{a.sim_url}/webex",
                 "client_id": client_id, "client_secret": client_secret, "refresh_token": refresh,
                 "org_id": org, "business_address": address, "channel_name": "ai-handoff",
                 "webhook_secret": webhook_secret}


# Short name (the simulator's path prefix) -> integration key, simulator set-up.
INTEGRATIONS = {
    "genesys": ("genesys_integration", seed_genesys),
    "connect": ("amazon_connect_integration", seed_connect),
    "zendesk": ("zendesk_integration", seed_zendesk),
    "salesforce": ("salesforce_integration", seed_salesforce),
    "nice": ("nice_integration", seed_nice),
    "webex": ("webex_integration", seed_webex),
}


def seed_tenant(a):
    tenant = f"{a.account}/{a.project}/{a.env}"
    providers = [p.strip() for p in a.providers.split(",") if p.strip()]
    unknown = [p for p in providers if p not in INTEGRATIONS]
    if unknown or not providers:
        sys.exit(f"seed.py: --providers takes a list of {', '.join(INTEGRATIONS)}; got {a.providers!r}")
    # Every simulator is set up before any secret is written, so a failure leaves no half tenant.
    seeded = {p: INTEGRATIONS[p][1](a, tenant) for p in providers}
    # The `destination` form: "genesys-desk", "zendesk-desk", …, and "billing-desk" (Genesys).
    destinations = {f"{p}-desk": {INTEGRATIONS[p][0]: {"queue": "billing"}} for p in providers}
    if "genesys" in providers:
        destinations["billing-desk"] = destinations["genesys-desk"]
    put_secret(f"{PREFIX}/{tenant}/runtime", {
        "events_url": a.events_url, "events_secret": a.events_secret,
        "destinations": destinations, "max_session_age_secs": 3600,
    })
    for p, (_, secret) in seeded.items():
        put_secret(f"{PREFIX}/{tenant}/{INTEGRATIONS[p][0]}", secret)
    out = {"tenant": tenant, "integrations": {p: scope for p, (scope, _) in seeded.items()}}
    if "genesys" in seeded:
        out["integration_id"] = seeded["genesys"][0]
        out["webhook_url"] = f"{a.lambda_url}/lambda-url/inbound-webhook/webhooks/genesys/{tenant}"
    out["handoff_api_key"] = seed_screen_pop(a, tenant)
    print(json.dumps(out))


def seed_screen_pop(a, tenant):
    """The tenant's handoff API key, registered with the simulator so its agent
    desktops can show a screen-pop (a platform would hold the key the same way)."""
    api_key = secrets.token_urlsafe(24)
    put_secret(f"{PREFIX}/{tenant}/handoff_api", {"api_key": api_key})
    post_json(f"{a.sim_url}/sim/screenpop/sources", {
        "base_url": f"{a.lambda_url}/lambda-url/handoff-api/handoffs/{tenant}", "api_key": api_key,
    })
    return api_key


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("table")
    t = sub.add_parser("tenant")
    t.add_argument("account"); t.add_argument("project"); t.add_argument("env")
    for flag in ("--events-url", "--events-secret", "--sim-url", "--lambda-url"):
        t.add_argument(flag, required=True)
    t.add_argument("--integration-id", help="the Genesys integration id (default: random)")
    t.add_argument("--providers", default=",".join(INTEGRATIONS),
                   help="comma-separated integrations to configure (default: all six)")
    a = p.parse_args()
    if a.cmd == "table":
        create_table()
    else:
        seed_tenant(a)


if __name__ == "__main__":
    sys.exit(main())
