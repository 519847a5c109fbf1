#!/usr/bin/env python3
"""Fails when template.yaml grants wildcard actions or resources on DynamoDB,
Secrets Manager, Connect or SNS (issue: least privilege). The only wildcard
allowed is a `/*` suffix below a named resource (tenant secrets under
`chat-handoff/*`, contacts under one Connect instance), never `*` alone, a
service-wide action (`dynamodb:*`) or a wildcard account/region/table.

Usage: check_iam.py [template.yaml] — prints each statement checked; exit 1 on a finding.
"""
import re
import sys

import yaml

SERVICES = ("dynamodb", "secretsmanager", "connect", "sns")


class Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {"Fn::" + suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {"Fn::" + suffix: loader.construct_sequence(node, deep=True)}
    return {"Fn::" + suffix: loader.construct_mapping(node, deep=True)}


Loader.add_multi_constructor("!", _tag)


def as_list(v):
    return v if isinstance(v, list) else [v]


def text_of(resource):
    """The ARN text of a resource value (`!Sub` strings, `!GetAtt` names)."""
    if isinstance(resource, str):
        return resource
    if isinstance(resource, dict):
        for key in ("Fn::Sub", "Fn::GetAtt", "Fn::Ref", "Ref", "Fn::Join"):
            if key in resource:
                v = resource[key]
                return v if isinstance(v, str) else str(v)
    return str(resource)


def statements(node):
    """Every IAM statement anywhere in the template (policies, `!If` branches)."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for v in node.values():
            yield from statements(v)
    elif isinstance(node, list):
        for v in node:
            yield from statements(v)


def findings(template):
    out = []
    for st in statements(template):
        actions = [a for a in as_list(st["Action"]) if isinstance(a, str)]
        ours = [a for a in actions if a.split(":")[0] in SERVICES]
        if not ours:
            continue
        for a in ours:
            if "*" in a:
                out.append(f"wildcard action {a}")
        for r in as_list(st.get("Resource", [])):
            # `${AWS::Region}` and friends hold `::`: name them before splitting.
            arn = re.sub(r"\$\{AWS::(\w+)\}", r"\1", text_of(r))
            if arn.strip() == "*":
                out.append(f"Resource '*' for {ours}")
                continue
            parts = arn.split(":")
            # arn:partition:service:region:account:resource
            if len(parts) >= 6 and any("*" in p for p in parts[1:5]):
                out.append(f"wildcard partition/service/region/account in {arn}")
            tail = ":".join(parts[5:]) if len(parts) >= 6 else arn
            if "*" in tail and not tail.endswith("/*"):
                out.append(f"wildcard inside resource name {arn}")
            if tail in ("*", "table/*", "secret:*", "instance/*", "/*"):
                out.append(f"whole-service resource {arn}")
        print(f"checked {st.get('Sid', '?')}: {ours}")
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    with open(path) as f:
        template = yaml.load(f, Loader=Loader)
    problems = findings(template)
    for p in problems:
        print(f"IAM: {p}")
    print(f"{len(problems)} IAM findings in {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
