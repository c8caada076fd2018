# Offline checks of the security properties, against a mocked AWS provider:
#   terraform init -backend=false -plugin-dir=DIR && terraform test

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
  mock_resource "aws_kms_key" {
    defaults = {
      arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    }
  }
  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/mock"
    }
  }
  mock_resource "aws_iam_instance_profile" {
    defaults = {
      arn = "arn:aws:iam::123456789012:instance-profile/mock"
    }
  }
  mock_resource "aws_iam_policy" {
    defaults = {
      arn = "arn:aws:iam::123456789012:policy/mock"
    }
  }
  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::inbedder-test-lake"
      id  = "inbedder-test-lake"
    }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = {
      arn = "arn:aws:dynamodb:us-east-1:123456789012:table/inbedder-delta-log"
    }
  }
  mock_resource "aws_launch_template" {
    defaults = {
      id = "lt-0123456789abcdef0"
    }
  }
  mock_resource "aws_emr_cluster" {
    defaults = {
      arn = "arn:aws:elasticmapreduce:us-east-1:123456789012:cluster/j-MOCK"
    }
  }
}

variables {
  lake_bucket_name = "inbedder-test-lake"
  ray_ami_id       = "ami-0123456789abcdef0"
}

run "ray_and_spark_ports_are_reachable_only_inside_the_vpc" {
  command = apply

  assert {
    condition     = alltrue([for r in aws_vpc_security_group_ingress_rule.ray : r.cidr_ipv4 == var.vpc_cidr && r.cidr_ipv4 != "0.0.0.0/0"])
    error_message = "a Ray ingress rule admits traffic from outside the VPC"
  }
  assert {
    condition     = toset([for r in aws_vpc_security_group_ingress_rule.ray : r.from_port]) == toset([6379, 8265, 10001, 10002])
    error_message = "Ray's GCS, dashboard, client and worker ports must all be open inside the VPC"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.spark_from_vpc.cidr_ipv4 == var.vpc_cidr
    error_message = "Spark ingress must come from the VPC only"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.emr_service_from_spark.cidr_ipv4 == null
    error_message = "EMR service access must come from the cluster's own security group"
  }
  assert {
    condition     = alltrue([for s in aws_subnet.private : !s.map_public_ip_on_launch])
    error_message = "private subnets must not hand out public IPs"
  }
}

run "the_lake_is_encrypted_versioned_and_never_public" {
  command = apply

  assert {
    condition     = one(aws_s3_bucket_server_side_encryption_configuration.lake.rule).apply_server_side_encryption_by_default[0].sse_algorithm == "aws:kms"
    error_message = "the lake bucket must be encrypted with KMS"
  }
  assert {
    condition     = aws_s3_bucket_versioning.lake.versioning_configuration[0].status == "Enabled"
    error_message = "the lake bucket must be versioned"
  }
  assert {
    condition = alltrue([
      aws_s3_bucket_public_access_block.lake.block_public_acls,
      aws_s3_bucket_public_access_block.lake.block_public_policy,
      aws_s3_bucket_public_access_block.lake.ignore_public_acls,
      aws_s3_bucket_public_access_block.lake.restrict_public_buckets,
    ])
    error_message = "every public access block setting must be on"
  }
  assert {
    condition     = aws_kms_key.lake.enable_key_rotation
    error_message = "the lake key must rotate"
  }
  assert {
    condition     = aws_dynamodb_table.delta_lock.server_side_encryption[0].enabled && aws_dynamodb_table.delta_lock.hash_key == "tablePath" && aws_dynamodb_table.delta_lock.range_key == "fileName"
    error_message = "the Delta commit table must be encrypted and keyed as S3DynamoDBLogStore expects (tablePath, fileName)"
  }
}

run "nodes_use_imdsv2_and_encrypted_disks" {
  command = apply

  assert {
    condition = alltrue([for lt in [aws_launch_template.ray_head, aws_launch_template.ray_gpu_worker] :
    lt.metadata_options[0].http_tokens == "required" && lt.block_device_mappings[0].ebs[0].encrypted == "true"])
    error_message = "Ray nodes must require IMDSv2 and encrypt their volumes"
  }
  assert {
    condition     = aws_autoscaling_group.ray_gpu_workers.max_size == var.ray_gpu_workers_max && aws_autoscaling_group.ray_head.max_size == 1
    error_message = "one Ray head, GPU workers scaling up to ray_gpu_workers_max"
  }
  assert {
    condition     = length(aws_emr_cluster.spark.bootstrap_action) == 1
    error_message = "EMR must install the package at bootstrap"
  }
}

run "managed_airflow_is_private" {
  command = apply
  variables {
    enable_airflow = true
  }

  assert {
    condition     = aws_mwaa_environment.main[0].webserver_access_mode == "PRIVATE_ONLY"
    error_message = "the Airflow web server must not be public"
  }
  assert {
    condition     = aws_vpc_security_group_ingress_rule.airflow_self[0].cidr_ipv4 == null
    error_message = "Airflow ingress only from its own group"
  }
}

run "a_bad_name_is_refused" {
  command = plan
  variables {
    name = "Bad_Name!"
  }
  expect_failures = [var.name]
}

run "an_open_vpc_range_is_refused" {
  command = plan
  variables {
    vpc_cidr = "0.0.0.0/0"
  }
  expect_failures = [var.vpc_cidr]
}
