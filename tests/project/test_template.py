"""template.yaml: linted as CI and AWS would (cfn-lint, sam validate --lint), then read for
what the function needs: its routes, bucket, trigger, least privilege and failure handling.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from chatserver.core.settings import Settings
from emulation.runtimes import find_sam
from tests.support import REPO
from tests.support.servers import installed

TEMPLATE = REPO / "template.yaml"


def dockerfile_build_args() -> dict[str, str]:
    text = (REPO / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


def load() -> dict[str, Any]:
    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return template


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def the_function(template: dict[str, Any]) -> dict[str, Any]:
    (function,) = resources(template, "AWS::Serverless::Function").values()
    return function


def test_cfn_lint_passes() -> None:
    cfn_lint = shutil.which("cfn-lint") or str(Path(sys.executable).parent / "cfn-lint")
    result = subprocess.run(
        [cfn_lint, str(TEMPLATE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_lint_passes() -> None:
    sam = installed(find_sam)
    result = subprocess.run(
        [str(sam), "validate", "--lint", "--region", "eu-west-1", "--template-file", str(TEMPLATE)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_function_is_the_image_built_from_the_dockerfile() -> None:
    function = the_function(load())
    assert function["Properties"]["PackageType"] == "Image"
    metadata = function["Metadata"]
    assert metadata["Dockerfile"] == "Dockerfile"
    assert metadata["DockerContext"] == "."
    defaults = dockerfile_build_args()
    assert metadata["DockerBuildArgs"] == {"ENGINE": defaults["ENGINE"], "MODEL": defaults["MODEL"]}


def test_sizing_is_parameters_with_defaults_for_the_base_model() -> None:
    template = load()
    parameters = template["Parameters"]
    properties = the_function(template)["Properties"]
    assert properties["MemorySize"] == {"Ref": "MemorySize"}
    assert properties["Timeout"] == {"Ref": "Timeout"}
    assert properties["EphemeralStorage"] == {"Size": {"Ref": "EphemeralStorage"}}
    assert "ReservedConcurrency" in str(properties["ReservedConcurrentExecutions"])
    assert 1769 <= parameters["MemorySize"]["Default"] <= 10240  # at least one full vCPU
    assert parameters["Timeout"]["Default"] <= 900
    # /tmp holds an S3 upload while it is decoded.
    settings = Settings()
    assert parameters["EphemeralStorage"]["Default"] * 1024 * 1024 > settings.max_job_upload_bytes
    assert parameters["ReservedConcurrency"]["Default"] == -1  # reserve nothing unless asked


def test_api_sends_every_path_and_method_to_the_app_with_binary_media_types() -> None:
    template = load()
    events = the_function(template)["Properties"]["Events"].values()
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "Api"}
    # The app is the one router: its own 404 and 405, and CORS preflights (OPTIONS) answered
    # with the configured origins. infra/emulation/gateway.py proxies every path the same way.
    assert routes == {("any", "/"), ("any", "/{proxy+}")}
    (api,) = resources(template, "AWS::Serverless::Api").values()
    # REST APIs pass a multipart body to Lambda base64-encoded only for listed media types.
    assert {"multipart~1form-data", "audio~1*"} <= set(api["Properties"]["BinaryMediaTypes"])


def test_api_keys_and_cors_origins_are_stack_parameters() -> None:
    template = load()
    parameters = template["Parameters"]
    keys, origins = parameters["ApiKeys"], parameters["ApiCorsOrigins"]
    assert keys["NoEcho"] is True  # masked by CloudFormation
    env = the_function(template)["Properties"]["Environment"]["Variables"]
    assert env["CHATSERVER_API_KEYS"] == {"Ref": "ApiKeys"}
    assert env["CHATSERVER_CORS_ORIGINS"] == {"Ref": "ApiCorsOrigins"}
    # Never baked into the image.
    assert "CHATSERVER_API_KEYS" not in (REPO / "Dockerfile").read_text()
    # The defaults mean no keys and no CORS, as the settings' own defaults do.
    defaults = Settings(api_keys=keys["Default"], cors_origins=origins["Default"])
    assert defaults.api_keys == []
    assert defaults.cors_origins == []
    assert Settings(api_keys="sk-one,sk-two").api_keys[1].get_secret_value() == "sk-two"
    assert re.fullmatch(keys["AllowedPattern"], "sk-one,sk-two")
    assert not re.fullmatch(keys["AllowedPattern"], "sk one")


def test_callback_secret_is_a_masked_stack_parameter() -> None:
    template = load()
    secret = template["Parameters"]["CallbackSecret"]
    assert secret["NoEcho"] is True  # masked by CloudFormation
    env = the_function(template)["Properties"]["Environment"]["Variables"]
    assert env["CHATSERVER_CALLBACK_SECRET"] == {"Ref": "CallbackSecret"}
    assert "CHATSERVER_CALLBACK_SECRET" not in (REPO / "Dockerfile").read_text()
    # Empty (the default) means no callbacks, as the settings read it; a short key is refused.
    assert Settings(callback_secret=secret["Default"]).callback_secret is None
    assert re.fullmatch(secret["AllowedPattern"], "")
    assert re.fullmatch(secret["AllowedPattern"], "0f" * 32)
    assert not re.fullmatch(secret["AllowedPattern"], "short")
    assert not re.fullmatch(secret["AllowedPattern"], "a" * 31 + " " + "b")
    # The test-only switch never reaches a deployment.
    assert "CHATSERVER_CALLBACK_ALLOW_PRIVATE" not in json.dumps(template)


def test_bucket_is_private_encrypted_and_takes_browser_posts() -> None:
    bucket = load()["Resources"]["AudioBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    (cors,) = bucket["CorsConfiguration"]["CorsRules"]
    assert cors["AllowedMethods"] == ["POST"]


def test_trigger_watches_only_the_upload_prefix_that_the_app_uses() -> None:
    template = load()
    (trigger,) = [e for e in the_function(template)["Properties"]["Events"].values() if e["Type"] == "S3"]
    assert trigger["Properties"]["Bucket"] == {"Ref": "AudioBucket"}
    assert trigger["Properties"]["Events"] == "s3:ObjectCreated:*"
    (rule,) = trigger["Properties"]["Filter"]["S3Key"]["Rules"]
    assert rule == {"Name": "prefix", "Value": {"Ref": "UploadPrefix"}}
    settings = Settings()
    assert template["Parameters"]["UploadPrefix"]["Default"] == settings.upload_prefix
    assert template["Parameters"]["ResultPrefix"]["Default"] == settings.result_prefix
    env = the_function(template)["Properties"]["Environment"]["Variables"]
    assert env["CHATSERVER_UPLOAD_PREFIX"] == {"Ref": "UploadPrefix"}
    assert env["CHATSERVER_RESULT_PREFIX"] == {"Ref": "ResultPrefix"}


def test_policies_are_least_privilege() -> None:
    template = load()
    properties = the_function(template)["Properties"]
    bucket_name = template["Resources"]["AudioBucket"]["Properties"]["BucketName"]
    # One name in three places: a Ref to the bucket would be a dependency cycle.
    assert properties["Environment"]["Variables"]["CHATSERVER_BUCKET"] == bucket_name
    (policy,) = properties["Policies"]
    granted: dict[str, set[str]] = {}
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        if statement["Action"] == "sqs:SendMessage":
            # The job runner sends the chunks of a fanned-out upload, to that queue only.
            assert statement["Resource"] == {"Fn::GetAtt": ["ChunkQueue", "Arn"]}
            continue
        pattern, values = statement["Resource"]["Fn::Sub"]
        assert values == bucket_name["Fn::Sub"][1]
        assert pattern.startswith("arn:${AWS::Partition}:s3:::" + bucket_name["Fn::Sub"][0])
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        scope = pattern.split(bucket_name["Fn::Sub"][0], 1)[1]
        granted.setdefault(scope, set()).update(actions)
    assert granted == {
        "/${UploadPrefix}*": {"s3:GetObject", "s3:PutObject"},  # read uploads; sign presigned POSTs
        "/${ResultPrefix}*": {"s3:GetObject", "s3:PutObject"},
        "/${WorkPrefix}*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},  # only work is deleted
        "": {"s3:ListBucket"},  # 404 rather than 403 for a result not written yet
    }


def test_failed_s3_events_are_retried_then_dead_lettered() -> None:
    template = load()
    config = the_function(template)["Properties"]["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == {"Ref": "AsyncRetryAttempts"}
    assert template["Parameters"]["AsyncRetryAttempts"]["Default"] >= 1
    on_failure = config["DestinationConfig"]["OnFailure"]
    assert on_failure["Type"] == "SQS"
    assert on_failure["Destination"] == {"Fn::GetAtt": ["FailedEventsQueue", "Arn"]}
    assert template["Resources"]["FailedEventsQueue"]["Type"] == "AWS::SQS::Queue"


def test_outputs_name_the_api_url_and_the_bucket() -> None:
    outputs = load()["Outputs"]
    assert "execute-api" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["BucketName"]["Value"] == {"Ref": "AudioBucket"}


# The SAM transform runs in .venv-sam beside sam: aws-sam-translator pins pydantic below the
# runtime's, and the suite must run on the runtime's exact versions (tests/project/test_pins.py).
_TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform

class NoManagedPolicies:
    def load(self):
        return {}

json.dump(transform(json.load(sys.stdin), {}, NoManagedPolicies()), sys.stdout)
"""


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    sam_python = find_sam().parent / "python"
    done = subprocess.run(
        [str(sam_python), "-c", _TRANSFORM],
        input=json.dumps(template),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_sam_transform_adds_the_dead_letter_permission_and_the_notification() -> None:
    template = load()
    # sam build fills in the image it pushed.
    the_function(template)["Properties"]["ImageUri"] = (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/chatserver:x"
    )
    output = sam_transform(template)
    (role,) = resources(output, "AWS::IAM::Role").values()
    sends = [
        statement
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "sqs:SendMessage"
    ]
    # The dead-letter destination (SAM's) and the chunk queue (ours): nothing else.
    assert all(statement["Effect"] == "Allow" for statement in sends)
    assert sorted(statement["Resource"]["Fn::GetAtt"][0] for statement in sends) == [
        "ChunkQueue",
        "FailedEventsQueue",
    ]
    bucket = output["Resources"]["AudioBucket"]
    (notification,) = bucket["Properties"]["NotificationConfiguration"]["LambdaConfigurations"]
    assert notification["Event"] == "s3:ObjectCreated:*"
    # The bucket waits for the permission that lets S3 invoke the function.
    assert bucket["DependsOn"] == ["TranscribeFunctionUploadPermission"]


def test_sam_transform_proxies_every_method_of_every_path_to_the_function() -> None:
    template = load()
    the_function(template)["Properties"]["ImageUri"] = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/cs:x"
    (rest_api,) = resources(sam_transform(template), "AWS::ApiGateway::RestApi").values()
    paths = rest_api["Properties"]["Body"]["paths"]
    assert set(paths) == {"/", "/{proxy+}"}
    for methods in paths.values():
        # OPTIONS included: API Gateway answers no preflight itself, the app does.
        assert set(methods) == {"x-amazon-apigateway-any-method"}
        integration = methods["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"


# --- Fan-out of long S3 uploads: the chunk queue ------------------------------------------------
def test_chunk_queue_feeds_the_function_one_chunk_at_a_time() -> None:
    template = load()
    properties = the_function(template)["Properties"]
    event = properties["Events"]["Chunks"]
    assert event["Type"] == "SQS"
    assert event["Properties"] == {
        "Queue": {"Fn::GetAtt": ["ChunkQueue", "Arn"]},
        "BatchSize": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "ScalingConfig": {"MaximumConcurrency": {"Ref": "ChunkMaxConcurrency"}},
    }
    queue = template["Resources"]["ChunkQueue"]["Properties"]
    # Lambda refuses a mapping whose queue's visibility timeout is below the function timeout.
    assert queue["VisibilityTimeout"] >= template["Parameters"]["Timeout"]["MaxValue"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ChunkDeadLetterQueue", "Arn"]},
        "maxReceiveCount": {"Ref": "ChunkMaxReceives"},
    }
    env = properties["Environment"]["Variables"]
    assert env["CHATSERVER_CHUNK_QUEUE_URL"] == {"Ref": "ChunkQueue"}
    # The worker marks a chunk stuck on the delivery the queue dead-letters after.
    assert env["CHATSERVER_CHUNK_MAX_RECEIVES"] == {"Ref": "ChunkMaxReceives"}
    settings = Settings()
    assert template["Parameters"]["ChunkMaxReceives"]["Default"] == settings.chunk_max_receives
    assert template["Parameters"]["WorkPrefix"]["Default"] == settings.work_prefix
    assert env["CHATSERVER_WORK_PREFIX"] == {"Ref": "WorkPrefix"}


def test_work_objects_expire_and_the_work_prefix_is_kept_apart() -> None:
    template = load()
    rules = template["Resources"]["AudioBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (work,) = [rule for rule in rules if rule.get("Prefix") == {"Ref": "WorkPrefix"}]
    assert work["Status"] == "Enabled"
    assert work["ExpirationInDays"] == {"Ref": "WorkRetentionDays"}
    assertions = template["Rules"]["WorkOutsideUploadsAndResults"]["Assertions"]
    compared = {json.dumps(a["Assert"], sort_keys=True) for a in assertions}
    for other in ("UploadPrefix", "ResultPrefix"):
        assert (
            json.dumps({"Fn::Not": [{"Fn::Equals": [{"Ref": "WorkPrefix"}, {"Ref": other}]}]}, sort_keys=True)
            in compared
        )
