//! The CloudFormation templates in `deploy/cloudformation/` against the real binary:
//! each template is read and its intrinsic functions resolved with its parameter
//! defaults (and the overrides its README deploys with), the request Firehose would
//! send for that stream is built from what the templates say (stream name, URL path,
//! common attributes, content encoding, the key in the secret) with records as each
//! AWS source writes them, and it is posted to `hydrant` run with the configuration
//! the README gives. A change to a default that no longer matches Hydrant's
//! configuration (a path, a key name, the encoding, the output format) fails here.
//! Invariants the templates promise (gzip, 2 h of retries, failed data only to S3,
//! no wildcard resources in IAM policies) are checked on the YAML itself.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::process::{Hydrant, Stderr, hydrant};
use serde_json::{Map, Value, json};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "eu-west-1";
const PARTITION: &str = "aws";
const SOURCES: [&str; 3] = ["logs", "metrics", "events"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A template as JSON values. Templates are written with the long forms of the
/// intrinsic functions (`Fn::Sub:`, `Ref:`): YAML tags (`!Ref`) are refused, so
/// that what is read here is what CloudFormation reads.
fn template(name: &str) -> Value {
    let path = root().join("deploy/cloudformation").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let yaml: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    assert_no_tags(&yaml, name);
    serde_json::to_value(&yaml).unwrap()
}

fn assert_no_tags(value: &serde_norway::Value, name: &str) {
    match value {
        serde_norway::Value::Tagged(tagged) => {
            panic!("{name}: write {} in its long form (Fn::…)", tagged.tag)
        }
        serde_norway::Value::Sequence(items) => {
            items.iter().for_each(|item| assert_no_tags(item, name));
        }
        serde_norway::Value::Mapping(map) => map.values().for_each(|v| assert_no_tags(v, name)),
        _ => {}
    }
}

/// A template with its parameters set: defaults, then `overrides`. Resolves the
/// intrinsic functions the templates use; a reference to a resource or one of its
/// attributes becomes `{Name}` or `{Name.Attribute}`.
struct Stack {
    template: Value,
    parameters: BTreeMap<String, Value>,
}

impl Stack {
    fn new(name: &str, overrides: &[(&str, &str)]) -> Self {
        let template = template(name);
        let mut parameters = BTreeMap::new();
        for (key, spec) in template["Parameters"].as_object().unwrap() {
            let list = spec["Type"] == "CommaDelimitedList";
            let value = |text: &str| {
                if list {
                    Value::Array(
                        text.split(',')
                            .filter(|item| !item.is_empty())
                            .map(|item| Value::String(item.to_owned()))
                            .collect(),
                    )
                } else {
                    Value::String(text.to_owned())
                }
            };
            let given = overrides.iter().find(|(name, _)| name == key);
            let text = match (given, &spec["Default"]) {
                (Some((_, text)), _) => (*text).to_owned(),
                (None, Value::String(text)) => text.clone(),
                (None, Value::Number(number)) => number.to_string(),
                (None, other) => panic!("{name}: parameter {key} needs a value, default {other}"),
            };
            if let Some(allowed) = spec["AllowedValues"].as_array() {
                assert!(
                    allowed.iter().any(|a| a.as_str() == Some(&text)
                        || a.as_u64().is_some_and(|n| n.to_string() == text)),
                    "{name}: {key}={text} is not one of {allowed:?}"
                );
            }
            parameters.insert(key.clone(), value(&text));
        }
        for (key, _) in overrides {
            assert!(
                parameters.contains_key(*key),
                "{name} has no parameter {key}"
            );
        }
        Self {
            template,
            parameters,
        }
    }

    fn resource(&self, name: &str) -> &Value {
        let resource = &self.template["Resources"][name];
        assert!(resource.is_object(), "no resource {name}");
        resource
    }

    /// Whether the resource exists with these parameters.
    fn created(&self, name: &str) -> bool {
        match self.resource(name)["Condition"].as_str() {
            Some(condition) => self.condition(condition),
            None => true,
        }
    }

    /// A resource's properties, resolved.
    fn properties(&self, name: &str) -> Value {
        assert!(self.created(name), "{name} is not created");
        self.eval(&self.resource(name)["Properties"]).unwrap()
    }

    fn condition(&self, name: &str) -> bool {
        let condition = &self.template["Conditions"][name];
        assert!(!condition.is_null(), "no condition {name}");
        self.truth(condition)
    }

    fn truth(&self, value: &Value) -> bool {
        let (function, arguments) = single(value).unwrap_or_else(|| panic!("condition {value}"));
        match function {
            "Condition" => self.condition(arguments.as_str().unwrap()),
            "Fn::Equals" => {
                let pair = arguments.as_array().unwrap();
                self.eval(&pair[0]) == self.eval(&pair[1])
            }
            "Fn::Not" => !self.truth(&arguments[0]),
            "Fn::And" => arguments.as_array().unwrap().iter().all(|c| self.truth(c)),
            "Fn::Or" => arguments.as_array().unwrap().iter().any(|c| self.truth(c)),
            other => panic!("unknown condition function {other}"),
        }
    }

    /// `None` is `AWS::NoValue`: the property or list item is left out.
    fn eval(&self, value: &Value) -> Option<Value> {
        if let Some((function, arguments)) = single(value)
            && (function == "Ref" || function == "Condition" || function.starts_with("Fn::"))
        {
            return self.function(function, arguments);
        }
        Some(match value {
            Value::Array(items) => {
                Value::Array(items.iter().filter_map(|i| self.eval(i)).collect())
            }
            Value::Object(map) => Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.eval(v)?)))
                    .collect::<Map<_, _>>(),
            ),
            other => other.clone(),
        })
    }

    fn string(&self, value: &Value) -> String {
        match self.eval(value) {
            Some(Value::String(text)) => text,
            Some(Value::Number(number)) => number.to_string(),
            other => panic!("{value} is not a string: {other:?}"),
        }
    }

    fn reference(&self, name: &str) -> Option<Value> {
        let pseudo = match name {
            "AWS::NoValue" => return None,
            "AWS::AccountId" => ACCOUNT,
            "AWS::Region" => REGION,
            "AWS::Partition" => PARTITION,
            "AWS::StackName" => "test-stack",
            _ => "",
        };
        if !pseudo.is_empty() {
            return Some(Value::String(pseudo.to_owned()));
        }
        if let Some(value) = self.parameters.get(name) {
            return Some(value.clone());
        }
        let _ = self.resource(name);
        Some(Value::String(format!("{{{name}}}")))
    }

    fn function(&self, function: &str, arguments: &Value) -> Option<Value> {
        let list = |value: &Value| match self.eval(value) {
            Some(Value::Array(items)) => items,
            other => panic!("{function}: not a list: {other:?}"),
        };
        Some(match function {
            "Ref" => return self.reference(arguments.as_str().unwrap()),
            "Fn::GetAtt" => {
                let parts = arguments.as_array().unwrap();
                let resource = parts[0].as_str().unwrap();
                let _ = self.resource(resource);
                Value::String(format!("{{{resource}.{}}}", parts[1].as_str().unwrap()))
            }
            "Fn::If" => {
                let parts = arguments.as_array().unwrap();
                let branch = if self.condition(parts[0].as_str().unwrap()) {
                    &parts[1]
                } else {
                    &parts[2]
                };
                return self.eval(branch);
            }
            "Fn::Sub" => {
                let (text, variables) = match arguments {
                    Value::String(text) => (text.as_str(), Map::new()),
                    Value::Array(parts) => (
                        parts[0].as_str().unwrap(),
                        parts[1].as_object().unwrap().clone(),
                    ),
                    other => panic!("Fn::Sub {other}"),
                };
                Value::String(self.substitute(text, &variables))
            }
            "Fn::Join" => {
                let parts = arguments.as_array().unwrap();
                let items: Vec<String> = list(&parts[1]).iter().map(|i| self.string(i)).collect();
                Value::String(items.join(parts[0].as_str().unwrap()))
            }
            "Fn::Split" => {
                let parts = arguments.as_array().unwrap();
                let text = self.string(&parts[1]);
                Value::Array(
                    text.split(parts[0].as_str().unwrap())
                        .map(|piece| Value::String(piece.to_owned()))
                        .collect(),
                )
            }
            "Fn::Select" => {
                let parts = arguments.as_array().unwrap();
                let index: usize = self.string(&parts[0]).parse().unwrap();
                let items = list(&parts[1]);
                items
                    .get(index)
                    .unwrap_or_else(|| panic!("Fn::Select {index} of {items:?}"))
                    .clone()
            }
            other => panic!("unknown function {other}"),
        })
    }

    fn substitute(&self, text: &str, variables: &Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').unwrap() + start;
            let name = &rest[start + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = variables.get(name) {
                out.push_str(&self.string(value));
            } else if let Some((resource, attribute)) = name.split_once('.') {
                let _ = self.resource(resource);
                out.push_str(&format!("{{{resource}.{attribute}}}"));
            } else {
                out.push_str(&self.string(&json!({ "Ref": name })));
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

/// `{"Fn::X": arguments}`: the function's name and arguments.
fn single(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    map.iter().next().map(|(k, v)| (k.as_str(), v))
}

/// What one deployment of `delivery-stream.yaml` makes Firehose send.
struct Stream {
    name: String,
    arn: String,
    path: String,
    key_name: String,
    /// The key the stream's secret holds.
    key: String,
    common_attributes: Map<String, Value>,
    content_encoding: String,
}

fn test_key(source: &str) -> String {
    format!("k3y-for-{source}/+=")
}

/// `delivery-stream.yaml` deployed as the README does, for `source`.
fn delivery_stream(source: &str) -> (Stack, Stream) {
    let key = test_key(source);
    let stack = Stack::new(
        "delivery-stream.yaml",
        &[("Source", source), ("AccessKey", &key)],
    );
    let stream = stack.properties("DeliveryStream");
    let destination = &stream["HttpEndpointDestinationConfiguration"];
    let name = stream["DeliveryStreamName"].as_str().unwrap().to_owned();
    let url = destination["EndpointConfiguration"]["Url"]
        .as_str()
        .unwrap();
    let after_scheme = url.strip_prefix("https://").expect("Firehose needs https");
    let path = after_scheme[after_scheme.find('/').expect("a path")..].to_owned();
    assert!(
        destination["EndpointConfiguration"]["AccessKey"].is_null(),
        "the key comes from Secrets Manager, not the template"
    );
    let secrets = &destination["SecretsManagerConfiguration"];
    assert_eq!(secrets["Enabled"], true);
    assert_eq!(secrets["SecretARN"], "{AccessKeySecret}");
    let secret = stack.properties("AccessKeySecret");
    let value: Value = serde_json::from_str(secret["SecretString"].as_str().unwrap()).unwrap();
    assert_eq!(
        value,
        json!({ "api_key": &key }),
        "the shape Firehose and Hydrant read"
    );
    let common_attributes = destination["RequestConfiguration"]["CommonAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attribute| {
            (
                attribute["AttributeName"].as_str().unwrap().to_owned(),
                attribute["AttributeValue"].clone(),
            )
        })
        .collect();
    let stream = Stream {
        arn: format!("arn:{PARTITION}:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}"),
        name,
        path,
        key_name: secret["Name"].as_str().unwrap().to_owned(),
        key,
        common_attributes,
        content_encoding: destination["RequestConfiguration"]["ContentEncoding"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    (stack, stream)
}

/// The README's `hydrant.toml` and the key files its command line names.
fn readme_configuration() -> (String, Vec<PathBuf>) {
    let readme = std::fs::read_to_string(root().join("deploy/cloudformation/README.md")).unwrap();
    let section = &readme[readme.find("## Hydrant's configuration").unwrap()..];
    let block = |fence: &str| {
        let start = section.find(fence).unwrap() + fence.len();
        section[start..start + section[start..].find("```").unwrap()].to_owned()
    };
    let toml = block("```toml\n");
    let command = block("```sh\n");
    assert!(
        command
            .trim_start()
            .starts_with("hydrant --config hydrant.toml")
    );
    let words: Vec<&str> = command.split_whitespace().collect();
    let key_files = words
        .windows(2)
        .filter(|pair| pair[0] == "--access-key-file")
        .map(|pair| PathBuf::from(pair[1]))
        .collect();
    (toml, key_files)
}

/// Hydrant run as the README says, with each stream's secret as its key file.
fn start_hydrant(dir: &Path, streams: &[(&str, Stream)]) -> Hydrant {
    let (toml, key_files) = readme_configuration();
    let config = dir.join("hydrant.toml");
    std::fs::write(&config, toml).unwrap();
    let mut command = hydrant();
    command
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"));
    let mut named = BTreeSet::new();
    for file in &key_files {
        let stem = file.file_stem().unwrap().to_str().unwrap();
        let (_, stream) = streams
            .iter()
            .find(|(_, stream)| stream.key_name == stem)
            .unwrap_or_else(|| panic!("the README's key file {file:?} names no stream's secret"));
        let local = dir.join(file.file_name().unwrap());
        let secret = json!({ "api_key": stream.key }).to_string();
        std::fs::write(&local, secret).unwrap();
        command.arg("--access-key-file").arg(local);
        named.insert(stem.to_owned());
    }
    let expected: BTreeSet<String> = streams.iter().map(|(_, s)| s.key_name.clone()).collect();
    assert_eq!(named, expected, "one key file per stream's secret");
    Hydrant::spawn(&mut command, Stderr::Read)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    hydrant::limits::gunzip_capped(data, 16 << 20).unwrap()
}

/// Posts what Firehose sends for `stream`: its headers, its path, the records in a
/// JSON body, gzip'd when the stream says so. The status and the reply.
fn post(
    address: SocketAddr,
    stream: &Stream,
    request_id: &str,
    records: &[Vec<u8>],
) -> (u16, String) {
    let records: Vec<Value> = records
        .iter()
        .map(|record| json!({ "data": STANDARD.encode(record) }))
        .collect();
    let body =
        json!({ "requestId": request_id, "timestamp": 1_764_000_000_000_u64, "records": records });
    let mut body = body.to_string().into_bytes();
    let attributes = json!({ "commonAttributes": stream.common_attributes }).to_string();
    let key = stream.key.clone();
    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-Amz-Firehose-Protocol-Version", "1.0".to_owned()),
        ("X-Amz-Firehose-Request-Id", request_id.to_owned()),
        ("X-Amz-Firehose-Source-Arn", stream.arn.clone()),
        ("X-Amz-Firehose-Access-Key", key),
        ("X-Amz-Firehose-Common-Attributes", attributes),
    ];
    match stream.content_encoding.as_str() {
        "GZIP" => {
            body = gzip(&body);
            headers.push(("Content-Encoding", "gzip".to_owned()));
        }
        "NONE" => {}
        other => panic!("content encoding {other}"),
    }
    let mut connection = TcpStream::connect(address).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: firehose.example.com\r\nContent-Length: {}\r\nConnection: close\r\n",
        stream.path,
        body.len()
    );
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    connection.write_all(head.as_bytes()).unwrap();
    connection.write_all(&body).unwrap();
    let mut reply = String::new();
    connection.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).unwrap().parse().unwrap();
    (status, reply)
}

/// Records as CloudWatch Logs writes them into a stream: real captured Firehose
/// records (each a gzip'd subscription envelope), and the number of log events in
/// their data messages.
fn cloudwatch_logs_records() -> (Vec<Vec<u8>>, usize) {
    let body: Value = serde_json::from_slice(&common::fixture(
        "alloy/cw_logs_with_only_data_messages.json",
    ))
    .unwrap();
    let records: Vec<Vec<u8>> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| STANDARD.decode(record["data"].as_str().unwrap()).unwrap())
        .collect();
    let mut events = 0;
    for record in &records {
        let envelope: Value = serde_json::from_slice(&gunzip(record)).unwrap();
        assert_eq!(envelope["messageType"], "DATA_MESSAGE");
        events += envelope["logEvents"].as_array().unwrap().len();
    }
    (records, events)
}

/// Records as a metric stream writes them in `output_format`, and the Hydrant
/// format that reads them.
fn metric_stream_records(output_format: &str) -> (Vec<Vec<u8>>, &'static str) {
    match output_format {
        "json" => {
            let body: Value =
                serde_json::from_slice(&common::fixture("telegraf/records.json")).unwrap();
            let records = body["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|record| STANDARD.decode(record["data"].as_str().unwrap()).unwrap())
                .collect();
            (records, "metric_stream_json")
        }
        "opentelemetry1.0" => (
            vec![common::fixture("otel10/metric_stream_otel10.bin")],
            "metric_stream_otel10",
        ),
        "opentelemetry0.7" => (
            vec![common::fixture("otel07/metric_stream_otel07.bin")],
            "metric_stream_otel07",
        ),
        other => panic!("output format {other}"),
    }
}

/// Whether an EventBridge event pattern (exact values only, as the templates use)
/// matches `event`.
fn matches(pattern: &Value, event: &Value) -> bool {
    pattern
        .as_object()
        .unwrap()
        .iter()
        .all(|(key, wanted)| match wanted {
            Value::Array(values) => values.contains(&event[key]),
            Value::Object(_) => matches(wanted, &event[key]),
            other => panic!("pattern value {other}"),
        })
}

/// Events as EventBridge puts them into a stream (one event per record), each
/// with the `format` Hydrant stores it under.
fn eventbridge_events() -> Vec<(Value, &'static str)> {
    let base = |detail_type: &str, source: &str, detail: Value| {
        json!({
            "version": "0", "id": format!("{detail_type}-{source}"), "detail-type": detail_type,
            "source": source, "account": ACCOUNT, "time": "2026-05-04T10:00:00Z",
            "region": REGION, "resources": [], "detail": detail,
        })
    };
    vec![
        (
            base(
                "AWS API Call via CloudTrail",
                "aws.ec2",
                json!({
                    "eventVersion": "1.09", "eventTime": "2026-05-04T10:00:00Z",
                    "eventSource": "ec2.amazonaws.com", "eventName": "TerminateInstances",
                    "awsRegion": REGION, "readOnly": false, "eventCategory": "Management",
                    "managementEvent": true, "recipientAccountId": ACCOUNT,
                }),
            ),
            "cloudtrail",
        ),
        (
            base(
                "AWS Health Event",
                "aws.health",
                json!({
                    "eventArn": "arn:aws:health:eu-west-1::event/EC2/AWS_EC2_OPERATIONAL_ISSUE/1",
                    "service": "EC2", "eventTypeCode": "AWS_EC2_OPERATIONAL_ISSUE",
                    "eventTypeCategory": "issue", "statusCode": "open",
                }),
            ),
            "eventbridge",
        ),
        (
            base(
                "CloudWatch Alarm State Change",
                "aws.cloudwatch",
                json!({
                    "alarmName": "high-cpu",
                    "state": { "value": "ALARM", "reason": "Threshold Crossed" },
                    "previousState": { "value": "OK" },
                }),
            ),
            "eventbridge",
        ),
    ]
}

#[test]
fn templates_keep_their_promises() {
    for source in SOURCES {
        let (stack, stream) = delivery_stream(source);
        let properties = stack.properties("DeliveryStream");
        let destination = &properties["HttpEndpointDestinationConfiguration"];
        assert_eq!(stream.content_encoding, "GZIP");
        assert_eq!(
            destination["RetryOptions"]["DurationInSeconds"], 7200,
            "Firehose retries as long as Hydrant remembers deliveries (2 h)"
        );
        assert_eq!(destination["S3BackupMode"], "FailedDataOnly");
        assert_eq!(destination["CloudWatchLoggingOptions"]["Enabled"], true);
        assert_eq!(
            destination["S3Configuration"]["BucketARN"],
            "{FailedDataBucket.Arn}"
        );
        assert_eq!(stream.path, format!("/{source}"));
        assert_eq!(stream.common_attributes["source"], source);
        let bucket = stack.properties("FailedDataBucket");
        let block = &bucket["PublicAccessBlockConfiguration"];
        for setting in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            assert_eq!(block[setting], true, "{setting}");
        }
        assert!(bucket["BucketEncryption"].is_object());
        let rules = bucket["LifecycleConfiguration"]["Rules"]
            .as_array()
            .unwrap();
        assert!(
            rules
                .iter()
                .any(|rule| rule["ExpirationInDays"].is_string())
        );
        // The role may read exactly the secret the stream is configured with.
        let role = stack.properties("DeliveryRole");
        let statements = role["Policies"][0]["PolicyDocument"]["Statement"]
            .as_array()
            .unwrap();
        let secret = statements.iter().find(|s| s["Sid"] == "AccessKey").unwrap();
        assert_eq!(
            secret["Resource"],
            destination["SecretsManagerConfiguration"]["SecretARN"]
        );
    }

    // An existing secret instead: nothing is created, and the role reads that one.
    let existing = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hydrant-abc123";
    let stack = Stack::new("delivery-stream.yaml", &[("ExistingSecretArn", existing)]);
    assert!(!stack.created("AccessKeySecret"));
    let properties = stack.properties("DeliveryStream");
    assert_eq!(
        properties["HttpEndpointDestinationConfiguration"]["SecretsManagerConfiguration"]["SecretARN"],
        existing
    );

    // The sources' roles: trusted by their service for this account only, allowed
    // to put records into the one stream.
    let stream_arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/hydrant-x";
    for (file, role, service) in [
        (
            "logs-subscription.yaml",
            "SubscriptionRole",
            "logs.amazonaws.com",
        ),
        (
            "metric-stream.yaml",
            "MetricStreamRole",
            "streams.metrics.cloudwatch.amazonaws.com",
        ),
        (
            "eventbridge-rules.yaml",
            "EventsRole",
            "events.amazonaws.com",
        ),
    ] {
        let stack = Stack::new(file, &[("DeliveryStreamArn", stream_arn)]);
        let role = stack.properties(role);
        let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
        assert_eq!(trust["Principal"]["Service"], service, "{file}");
        assert_eq!(
            trust["Condition"]["StringEquals"]["aws:SourceAccount"], ACCOUNT,
            "{file}"
        );
        assert!(
            trust["Condition"]["ArnLike"]["aws:SourceArn"].is_string(),
            "{file}"
        );
        let allowed = &role["Policies"][0]["PolicyDocument"]["Statement"][0];
        assert_eq!(
            allowed["Action"],
            json!(["firehose:PutRecord", "firehose:PutRecordBatch"])
        );
        assert_eq!(allowed["Resource"], stream_arn, "{file}");
    }
}

/// No IAM policy in any template allows `*` actions or resources; an object
/// wildcard is allowed only below a bucket the template creates.
#[test]
fn iam_policies_name_their_resources() {
    let stream_arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/hydrant-x";
    let stacks = [
        Stack::new("delivery-stream.yaml", &[("AccessKey", "k")]),
        Stack::new(
            "logs-subscription.yaml",
            &[("DeliveryStreamArn", stream_arn)],
        ),
        Stack::new("metric-stream.yaml", &[("DeliveryStreamArn", stream_arn)]),
        Stack::new(
            "eventbridge-rules.yaml",
            &[("DeliveryStreamArn", stream_arn)],
        ),
    ];
    let mut checked = 0;
    for stack in &stacks {
        for (name, resource) in stack.template["Resources"].as_object().unwrap() {
            if resource["Type"] != "AWS::IAM::Role" {
                continue;
            }
            let role = stack.properties(name);
            for policy in role["Policies"].as_array().unwrap() {
                for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                    assert_eq!(statement["Effect"], "Allow");
                    let as_list = |value: &Value| match value {
                        Value::Array(items) => items.clone(),
                        other => vec![other.clone()],
                    };
                    for action in as_list(&statement["Action"]) {
                        assert!(!action.as_str().unwrap().contains('*'), "{name}: {action}");
                    }
                    for resource in as_list(&statement["Resource"]) {
                        let resource = resource.as_str().unwrap();
                        let concrete = resource.strip_suffix("/*").unwrap_or(resource);
                        assert!(!concrete.contains('*'), "{name}: {resource}");
                        if concrete != resource {
                            assert!(concrete.starts_with('{'), "{name}: {resource}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 7, "resources named in the templates' IAM policies");
}

#[test]
fn log_subscriptions_account_wide_or_per_group() {
    let stream_arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/hydrant-logs";
    let stack = Stack::new(
        "logs-subscription.yaml",
        &[("DeliveryStreamArn", stream_arn)],
    );
    let policy = stack.properties("AccountSubscriptionPolicy");
    assert_eq!(policy["PolicyType"], "SUBSCRIPTION_FILTER_POLICY");
    let document: Value = serde_json::from_str(policy["PolicyDocument"].as_str().unwrap()).unwrap();
    assert_eq!(document["DestinationArn"], stream_arn);
    assert_eq!(document["RoleArn"], "{SubscriptionRole.Arn}");
    // The stream's own error log group is left out by default: its errors would
    // otherwise be delivered through the stream that failed.
    let (_, logs) = delivery_stream("logs");
    let error_group = format!("/aws/kinesisfirehose/{}", logs.name);
    assert_eq!(
        policy["SelectionCriteria"],
        format!(r#"LogGroupName NOT IN ["{error_group}"]"#)
    );
    assert!((1..=5).all(|n| !stack.created(&format!("LogGroupSubscription{n}"))));

    let stack = Stack::new(
        "logs-subscription.yaml",
        &[
            ("DeliveryStreamArn", stream_arn),
            ("Mode", "LogGroups"),
            ("LogGroupName1", "/aws/lambda/a"),
            ("LogGroupName3", "/aws/lambda/c"),
        ],
    );
    assert!(!stack.created("AccountSubscriptionPolicy"));
    let created: Vec<String> = (1..=5)
        .filter(|n| stack.created(&format!("LogGroupSubscription{n}")))
        .map(|n| {
            stack.properties(&format!("LogGroupSubscription{n}"))["LogGroupName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(created, ["/aws/lambda/a", "/aws/lambda/c"]);
}

/// Each stream, deployed as the README says, delivers to Hydrant configured as the
/// README says: accepted, stored under the stream's key name, path and common
/// attributes, in the format the source writes, with no dead letters.
#[test]
fn each_stream_delivers_to_hydrant_as_configured() {
    let streams: Vec<(&str, Stream)> = SOURCES
        .iter()
        .map(|source| (*source, delivery_stream(source).1))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let server = start_hydrant(dir.path(), &streams);
    let stream = |source: &str| &streams.iter().find(|(s, _)| *s == source).unwrap().1;

    // CloudWatch Logs, through the subscription template, into the logs stream.
    let logs = stream("logs");
    let subscription = Stack::new(
        "logs-subscription.yaml",
        &[("DeliveryStreamArn", &logs.arn)],
    );
    let document = subscription.properties("AccountSubscriptionPolicy")["PolicyDocument"].clone();
    assert!(document.as_str().unwrap().contains(&logs.arn));
    let (records, log_events) = cloudwatch_logs_records();
    let (status, reply) = post(
        server.ingest,
        logs,
        "11111111-1111-4111-8111-111111111111",
        &records,
    );
    assert_eq!(status, 200, "{reply}\n{}", server.logs());

    // The metric stream, in its default output format, into the metrics stream.
    let metrics = stream("metrics");
    let metric_stream = Stack::new("metric-stream.yaml", &[("DeliveryStreamArn", &metrics.arn)]);
    let properties = metric_stream.properties("MetricStream");
    assert_eq!(properties["FirehoseArn"], metrics.arn);
    let statistics = &properties["StatisticsConfigurations"][0];
    assert_eq!(
        statistics["AdditionalStatistics"],
        json!(["p50", "p90", "p99"])
    );
    assert_eq!(statistics["IncludeMetrics"].as_array().unwrap().len(), 2);
    let output_format = properties["OutputFormat"].as_str().unwrap();
    let (records, metric_format) = metric_stream_records(output_format);
    let (status, reply) = post(
        server.ingest,
        metrics,
        "22222222-2222-4222-8222-222222222222",
        &records,
    );
    assert_eq!(status, 200, "{reply}\n{}", server.logs());

    // EventBridge: events each rule selects, one per record, into the events stream.
    let events = stream("events");
    let rules = Stack::new(
        "eventbridge-rules.yaml",
        &[("DeliveryStreamArn", &events.arn)],
    );
    let patterns: Vec<Value> = ["CloudTrailRule", "HealthRule", "AlarmRule"]
        .iter()
        .map(|rule| {
            let rule = rules.properties(rule);
            assert_eq!(rule["Targets"][0]["Arn"], events.arn);
            rule["EventPattern"].clone()
        })
        .collect();
    let samples = eventbridge_events();
    for (pattern, (event, _)) in patterns.iter().zip(&samples) {
        assert!(matches(pattern, event), "{pattern} does not select {event}");
        let others = patterns.iter().filter(|p| matches(p, event)).count();
        assert_eq!(others, 1, "one rule per event, else it is delivered twice");
    }
    let records: Vec<Vec<u8>> = samples
        .iter()
        .map(|(e, _)| e.to_string().into_bytes())
        .collect();
    let (status, reply) = post(
        server.ingest,
        events,
        "33333333-3333-4333-8333-333333333333",
        &records,
    );
    assert_eq!(status, 200, "{reply}\n{}", server.logs());

    // Each path's format is fixed to what its source writes: a mismatch would make
    // dead letters below, and `auto` would hide it.
    let (toml, _) = readme_configuration();
    let config: toml::Value = toml::from_str(&toml).unwrap();
    let rules: BTreeMap<&str, &str> = config["decode"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| {
            (
                rule["path"].as_str().unwrap(),
                rule["format"].as_str().unwrap(),
            )
        })
        .collect();
    let expected = BTreeMap::from([
        (stream("logs").path.as_str(), "cloudwatch_logs"),
        (stream("metrics").path.as_str(), metric_format),
        (stream("events").path.as_str(), "eventbridge"),
    ]);
    assert_eq!(rules, expected);

    let data = dir.path().join("data");
    assert_eq!(common::dead_letters(&data), Vec::<Value>::new());
    let stored = common::stored_events(&data);
    let of = |source: &str| -> Vec<&Value> {
        let stream = stream(source);
        let mine: Vec<&Value> = stored
            .iter()
            .filter(|event| event["firehose"]["path"] == stream.path.as_str())
            .collect();
        for event in &mine {
            let firehose = &event["firehose"];
            assert_eq!(firehose["access_key_name"], stream.key_name.as_str());
            assert_eq!(firehose["delivery_stream"], stream.name.as_str());
            assert_eq!(firehose["account_id"], ACCOUNT);
            assert_eq!(firehose["region"], REGION);
            assert_eq!(
                firehose["common_attributes"],
                Value::Object(stream.common_attributes.clone())
            );
        }
        mine
    };

    let logs = of("logs");
    assert_eq!(logs.len(), log_events);
    assert!(
        logs.iter()
            .all(|e| e["kind"] == "log" && e["aws"]["log_group"].is_string())
    );

    let metrics = of("metrics");
    assert!(!metrics.is_empty());
    assert!(metrics.iter().all(|e| e["kind"] == "metric"));

    let events = of("events");
    let formats: Vec<&str> = events
        .iter()
        .map(|e| e["format"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = samples.iter().map(|(_, format)| *format).collect();
    assert_eq!(formats, expected);
    assert!(events.iter().all(|e| e["kind"] == "record"));

    assert_eq!(stored.len(), logs.len() + metrics.len() + events.len());
    drop(server);
}
