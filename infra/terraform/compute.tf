# Spark on EMR (installs the package at bootstrap) and a Ray GPU cluster: one head,
# an auto-scaling group of GPU workers; both start Ray from their launch templates.

resource "aws_emr_cluster" "spark" {
  name                              = "${var.name}-spark"
  release_label                     = var.emr_release
  applications                      = ["Spark", "Hadoop"]
  service_role                      = aws_iam_role.emr_service.arn
  termination_protection            = false
  keep_job_flow_alive_when_no_steps = true
  log_uri                           = "s3://${aws_s3_bucket.lake.id}/logs/emr/"

  ec2_attributes {
    subnet_id                         = aws_subnet.private[0].id
    instance_profile                  = aws_iam_instance_profile.emr_nodes.arn
    emr_managed_master_security_group = aws_security_group.spark.id
    emr_managed_slave_security_group  = aws_security_group.spark.id
    service_access_security_group     = aws_security_group.emr_service.id
  }

  master_instance_group {
    instance_type = var.emr_master_instance_type
  }

  core_instance_group {
    instance_type  = var.emr_core_instance_type
    instance_count = var.emr_core_instance_count
  }

  bootstrap_action {
    name = "install-inbedder"
    path = "s3://${aws_s3_bucket.lake.id}/${aws_s3_object.bootstrap.key}"
  }

  configurations_json = jsonencode([{
    Classification = "spark-defaults"
    Properties = {
      "spark.sql.execution.arrow.pyspark.enabled" = "true"
      # for Delta/Spark jobs writing the same tables (delta-rs 1.x uses S3 conditional writes instead)
      "spark.delta.logStore.s3.impl"                            = "io.delta.storage.S3DynamoDBLogStore"
      "spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName" = aws_dynamodb_table.delta_lock.name
    }
  }])

  tags = { "for-use-with-amazon-emr-managed-policies" = "true" }
}

locals {
  ray_user_data = { for role in ["head", "worker"] : role => base64encode(templatefile(
    "${path.module}/templates/ray_node.sh.tftpl", {
      role      = role
      name      = var.name
      region    = var.region
      wheel_uri = "s3://${aws_s3_bucket.lake.id}/${var.package_wheel}"
  })) }
}

resource "aws_launch_template" "ray_head" {
  name_prefix            = "${var.name}-ray-head-"
  image_id               = var.ray_ami_id
  instance_type          = var.ray_head_instance_type
  vpc_security_group_ids = [aws_security_group.ray.id]
  user_data              = local.ray_user_data["head"]
  iam_instance_profile {
    arn = aws_iam_instance_profile.ray_nodes.arn
  }
  metadata_options {
    http_tokens = "required" # IMDSv2 only
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 100
      encrypted   = true
    }
  }
  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-ray-head", RayRole = "${var.name}-ray-head" }
  }
}

resource "aws_launch_template" "ray_gpu_worker" {
  name_prefix            = "${var.name}-ray-gpu-"
  image_id               = var.ray_ami_id
  instance_type          = var.ray_gpu_instance_type
  vpc_security_group_ids = [aws_security_group.ray.id]
  user_data              = local.ray_user_data["worker"]
  iam_instance_profile {
    arn = aws_iam_instance_profile.ray_nodes.arn
  }
  metadata_options {
    http_tokens = "required"
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size = 150
      encrypted   = true
    }
  }
  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-ray-gpu-worker", RayRole = "${var.name}-ray-worker" }
  }
}

resource "aws_autoscaling_group" "ray_head" {
  name                = "${var.name}-ray-head"
  min_size            = 1
  max_size            = 1
  desired_capacity    = 1
  vpc_zone_identifier = aws_subnet.private[*].id
  launch_template {
    id      = aws_launch_template.ray_head.id
    version = "$Latest"
  }
}

resource "aws_autoscaling_group" "ray_gpu_workers" {
  name                = "${var.name}-ray-gpu-workers"
  min_size            = var.ray_gpu_workers_min
  max_size            = var.ray_gpu_workers_max
  vpc_zone_identifier = aws_subnet.private[*].id
  launch_template {
    id      = aws_launch_template.ray_gpu_worker.id
    version = "$Latest"
  }
  depends_on = [aws_autoscaling_group.ray_head]
}
