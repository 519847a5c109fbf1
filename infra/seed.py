#!/usr/bin/env python3
"""Creates the table and a tenant's secrets in the local stack, and registers the
tenant's Genesys integration in the simulator.

Usage: seed.py table
       seed.py tenant ACCOUNT PROJECT ENV --events-url URL --events-secret S \
               --sim-url URL --lambda-url URL [--integration-id ID]
Reads AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SECRETS_MANAGER and TABLE_NAME.
Prints the tenant's generated values as JSON (secrets included: local only).
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


def create_table():
    ddb = boto3.client("dynamodb", region_name=REGION)
    name = os.environ["TABLE_NAME"]
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


def seed_tenant(a):
    tenant = f"{a.account}/{a.project}/{a.env}"
    integration_id = a.integration_id or f"int-{a.account}-{secrets.token_hex(4)}"
    client_id = f"client-{secrets.token_hex(6)}"
    client_secret = secrets.token_urlsafe(24)
    webhook_secret = secrets.token_urlsafe(24)
    webhook_url = f"{a.lambda_url}/lambda-url/inbound-webhook/webhooks/genesys/{tenant}"
    post_json(f"{a.sim_url}/sim/genesys/integrations", {
        "integration_id": integration_id, "client_id": client_id, "client_secret": client_secret,
        "webhook_url": webhook_url, "webhook_secret": webhook_secret, "typing_outbound": True,
    })
    put_secret(f"{PREFIX}/{tenant}/runtime", {
        "events_url": a.events_url, "events_secret": a.events_secret,
        "destinations": {"billing-desk": {"genesys_integration": {"queue": "billing"}}},
        "max_session_age_secs": 3600,
    })
    put_secret(f"{PREFIX}/{tenant}/genesys_integration", {
        "api_base": f"{a.sim_url}/genesys", "login_base": f"{a.sim_url}/genesys/login",
        "client_id": client_id, "client_secret": client_secret,
        "integration_id": integration_id, "webhook_secret": webhook_secret,
    })
    api_key = seed_screen_pop(a, tenant)
    print(json.dumps({"tenant": tenant, "integration_id": integration_id, "webhook_url": webhook_url,
                      "handoff_api_key": api_key}))


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
    t.add_argument("--integration-id")
    a = p.parse_args()
    if a.cmd == "table":
        create_table()
    else:
        seed_tenant(a)


if __name__ == "__main__":
    sys.exit(main())
