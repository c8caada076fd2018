# Least privilege: nodes may read and write the lake bucket, use its key and the
# Delta lock table, nothing else. EMR's service role uses AWS's scoped v2 policy.

data "aws_iam_policy_document" "lake_data_access" {
  statement {
    sid       = "ListLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.lake.arn]
  }
  statement {
    sid       = "ReadWriteLakeObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.lake.arn}/*"]
  }
  statement {
    sid       = "UseLakeKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
    resources = [aws_kms_key.lake.arn]
  }
  statement {
    sid = "DeltaCommitLock"
    actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:Query", "dynamodb:DescribeTable"]
    resources = [aws_dynamodb_table.delta_lock.arn]
  }
}

resource "aws_iam_policy" "lake_data_access" {
  name   = "${var.name}-lake-data-access"
  policy = data.aws_iam_policy_document.lake_data_access.json
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# --- EMR ---
data "aws_iam_policy_document" "emr_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["elasticmapreduce.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

resource "aws_iam_role" "emr_service" {
  name               = "${var.name}-emr-service"
  assume_role_policy = data.aws_iam_policy_document.emr_assume.json
}

resource "aws_iam_role_policy_attachment" "emr_service" {
  role       = aws_iam_role.emr_service.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
}

resource "aws_iam_role" "emr_nodes" {
  name               = "${var.name}-emr-nodes"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "emr_nodes_lake" {
  role       = aws_iam_role.emr_nodes.name
  policy_arn = aws_iam_policy.lake_data_access.arn
}

resource "aws_iam_instance_profile" "emr_nodes" {
  name = "${var.name}-emr-nodes"
  role = aws_iam_role.emr_nodes.name
}

# --- Ray ---
data "aws_iam_policy_document" "ray_discovery" {
  statement {
    sid       = "FindTheHead"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"] # Describe* calls cannot be scoped to resources
  }
}

resource "aws_iam_role" "ray_nodes" {
  name               = "${var.name}-ray-nodes"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

resource "aws_iam_role_policy_attachment" "ray_nodes_lake" {
  role       = aws_iam_role.ray_nodes.name
  policy_arn = aws_iam_policy.lake_data_access.arn
}

resource "aws_iam_role_policy" "ray_discovery" {
  name   = "${var.name}-ray-discovery"
  role   = aws_iam_role.ray_nodes.id
  policy = data.aws_iam_policy_document.ray_discovery.json
}

resource "aws_iam_instance_profile" "ray_nodes" {
  name = "${var.name}-ray-nodes"
  role = aws_iam_role.ray_nodes.name
}
