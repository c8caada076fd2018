# Optional managed Airflow running jobs/airflow/ (DAGs under s3://LAKE/airflow/dags).

data "aws_iam_policy_document" "airflow_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "airflow" {
  statement {
    sid       = "ReadDags"
    actions   = ["s3:GetObject*", "s3:GetBucket*", "s3:List*"]
    resources = [aws_s3_bucket.lake.arn, "${aws_s3_bucket.lake.arn}/airflow/*"]
  }
  statement {
    sid       = "SubmitToTheSparkCluster"
    actions   = ["elasticmapreduce:AddJobFlowSteps", "elasticmapreduce:DescribeStep", "elasticmapreduce:DescribeCluster"]
    resources = [aws_emr_cluster.spark.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents", "logs:GetLogEvents", "logs:DescribeLogGroups"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:airflow-${var.name}-*"]
  }
  statement {
    sid       = "UseLakeKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = [aws_kms_key.lake.arn]
  }
}

resource "aws_iam_role" "airflow" {
  count              = var.enable_airflow ? 1 : 0
  name               = "${var.name}-airflow"
  assume_role_policy = data.aws_iam_policy_document.airflow_assume.json
}

resource "aws_iam_role_policy" "airflow" {
  count  = var.enable_airflow ? 1 : 0
  name   = "${var.name}-airflow"
  role   = aws_iam_role.airflow[0].id
  policy = data.aws_iam_policy_document.airflow.json
}

resource "aws_security_group" "airflow" {
  count       = var.enable_airflow ? 1 : 0
  name        = "${var.name}-airflow"
  description = "MWAA workers and web server: reachable from inside the VPC only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "airflow_self" {
  count                        = var.enable_airflow ? 1 : 0
  security_group_id            = aws_security_group.airflow[0].id
  referenced_security_group_id = aws_security_group.airflow[0].id
  ip_protocol                  = "-1"
  description                  = "MWAA components talk to each other"
}

resource "aws_vpc_security_group_egress_rule" "airflow" {
  count             = var.enable_airflow ? 1 : 0
  security_group_id = aws_security_group.airflow[0].id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "outbound"
}

resource "aws_mwaa_environment" "main" {
  count                 = var.enable_airflow ? 1 : 0
  name                  = "${var.name}-airflow"
  airflow_version       = var.airflow_version
  execution_role_arn    = aws_iam_role.airflow[0].arn
  source_bucket_arn     = aws_s3_bucket.lake.arn
  dag_s3_path           = "airflow/dags"
  webserver_access_mode = "PRIVATE_ONLY"
  kms_key               = aws_kms_key.lake.arn
  network_configuration {
    security_group_ids = [aws_security_group.airflow[0].id]
    subnet_ids         = slice(aws_subnet.private[*].id, 0, 2)
  }
}
