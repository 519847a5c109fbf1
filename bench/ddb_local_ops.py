#!/usr/bin/env python3
"""DynamoDB Local's cost per request type, for reading the load benchmark.

Runs each request shape the relay sends on a relayed message (the same table
and index layout as infra/seed.py) back to back against the DynamoDB Local
at AWS_ENDPOINT_URL_DYNAMODB, after a warm-up, and prints per type: client
round trip (median, p99) and DynamoDB Local's CPU time per request, read from
/proc for the PID given with --pid. Prints numbers; asserts nothing.

Usage: ddb_local_ops.py --pid JAVA_PID [--count N] [--warmup N]
"""
import argparse
import os
import statistics
import time
import uuid

import sys

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "infra"))
from seed import create_table  # noqa: E402  (the relay's table layout, one definition)

TABLE = "ddb-ops-bench"


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_item(pk, version, body):
    return {
        "pk": {"S": pk}, "sk": {"S": "SESSION"}, "version": {"N": str(version)},
        "gsi1pk": {"S": "C#genesys#" + pk}, "gsi1sk": {"S": "T#acct#proj#live"},
        "gsi2pk": {"S": "LIVE#genesys"}, "gsi2sk": {"S": pk},
        "provider_data": {"S": body}, "delivered_seq": {"N": "0"}, "next_seq": {"N": "0"},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--warmup", type=int, default=600)
    a = ap.parse_args()
    ddb = boto3.client("dynamodb", config=Config(retries={"max_attempts": 1}))
    create_table(TABLE)
    pk = "T#acct#proj#live#S#" + uuid.uuid4().hex
    body = "x" * 600
    ddb.put_item(TableName=TABLE, Item=session_item(pk, 0, body))
    state = {"version": 0, "seq": 0}

    def get_item():
        ddb.get_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "SESSION"}}, ConsistentRead=True)

    def query_gsi():
        ddb.query(TableName=TABLE, IndexName="by_conversation",
                  KeyConditionExpression="gsi1pk = :c AND gsi1sk = :t",
                  ExpressionAttributeValues={":c": {"S": "C#genesys#" + pk}, ":t": {"S": "T#acct#proj#live"}})

    def put_item():
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": "MSG#" + uuid.uuid4().hex},
                                            "state": {"S": "sending"}},
                     ConditionExpression="attribute_not_exists(pk)")

    def update_item():
        ddb.update_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": "SESSION"}},
                        UpdateExpression="SET delivered_seq = :s",
                        ExpressionAttributeValues={":s": {"N": str(state["seq"])}})

    def transact_append():
        # The session rewrite guarded by its version, a dedupe key, one event.
        v, state["version"] = state["version"], state["version"] + 1
        state["seq"] += 1
        ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": session_item(pk, v + 1, body),
                     "ConditionExpression": "version = :v", "ExpressionAttributeValues": {":v": {"N": str(v)}}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "D#" + uuid.uuid4().hex}, "sk": {"S": "DEDUPE"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": pk}, "sk": {"S": f"EV#{state['seq']:012}"},
                                                   "body": {"S": body}, "gsi2pk": {"S": "PUSH"},
                                                   "gsi2sk": {"S": f"{time.time_ns()}#{pk}"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])

    def query_due():
        ddb.query(TableName=TABLE, IndexName="work", KeyConditionExpression="gsi2pk = :p AND gsi2sk < :d",
                  ExpressionAttributeValues={":p": {"S": "PUSH"}, ":d": {"S": "9"}}, Limit=1000)

    shapes = [("GetItem (consistent)", get_item), ("Query by_conversation index", query_gsi),
              ("PutItem (conditional)", put_item), ("UpdateItem", update_item),
              ("TransactWriteItems (3 puts)", transact_append), ("Query work index (due pushes)", query_due)]
    for _ in range(a.warmup // len(shapes)):
        for _, f in shapes:
            f()
    print(f"DynamoDB Local, {a.count} requests of each type back to back after {a.warmup} warm-up requests:")
    print()
    print("| request | round trip median / p99 (ms) | DynamoDB Local CPU per request (ms) |")
    print("|---|---|---|")
    for name, f in shapes:
        times = []
        cpu0 = cpu_secs(a.pid)
        for _ in range(a.count):
            t0 = time.perf_counter()
            f()
            times.append((time.perf_counter() - t0) * 1000)
        cpu = (cpu_secs(a.pid) - cpu0) / a.count * 1000
        times.sort()
        print(f"| {name} | {statistics.median(times):.2f} / {times[int(len(times) * 0.99) - 1]:.2f} | {cpu:.2f} |")
    ddb.delete_table(TableName=TABLE)


if __name__ == "__main__":
    main()
