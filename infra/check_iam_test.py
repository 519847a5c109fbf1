"""Tests of check_iam.py: a template with a wildcard must fail, ours must pass."""
import os
import unittest

import check_iam

ROOT = os.path.join(os.path.dirname(__file__), "..")


def template(statement):
    return {"Resources": {"F": {"Properties": {"Policies": [{"Statement": [statement]}]}}}}


class CheckIam(unittest.TestCase):
    def test_project_template_has_no_findings(self):
        with open(os.path.join(ROOT, "template.yaml")) as f:
            t = check_iam.yaml.load(f, Loader=check_iam.Loader)
        self.assertEqual(check_iam.findings(t), [])

    def test_wildcards_are_found(self):
        bad = [
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": {"Fn::GetAtt": "T.Arn"}},
            {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"},
            {"Effect": "Allow", "Action": ["sns:Publish"], "Resource": "arn:aws:sns:*:123:topic"},
            {"Effect": "Allow", "Action": ["connect:StartChatContact"], "Resource": "arn:aws:connect:us-east-1:1:instance/*"},
            {"Effect": "Allow", "Action": ["dynamodb:Query"], "Resource": "arn:aws:dynamodb:us-east-1:1:table/*"},
        ]
        for st in bad:
            self.assertTrue(check_iam.findings(template(st)), st)

    def test_scoped_prefixes_pass(self):
        ok = {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
              "Resource": {"Fn::Sub": "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:chat-handoff/*"}}
        self.assertEqual(check_iam.findings(template(ok)), [])


if __name__ == "__main__":
    unittest.main()
