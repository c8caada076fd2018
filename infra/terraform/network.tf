# A VPC whose compute lives in private subnets. Ray and Spark ports accept traffic
# from inside the VPC only; S3 and DynamoDB are reached through gateway endpoints.

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name}-vpc" }
}

resource "aws_subnet" "private" {
  count                   = length(var.availability_zones)
  vpc_id                  = aws_vpc.main.id
  availability_zone       = var.availability_zones[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 4, count.index)
  map_public_ip_on_launch = false
  tags = {
    Name                                       = "${var.name}-private-${count.index}"
    "for-use-with-amazon-emr-managed-policies" = "true"
  }
}

resource "aws_subnet" "public" {
  count                   = var.enable_nat_gateway ? 1 : 0
  vpc_id                  = aws_vpc.main.id
  availability_zone       = var.availability_zones[0]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 250)
  map_public_ip_on_launch = false
  tags                    = { Name = "${var.name}-public-nat" }
}

resource "aws_internet_gateway" "main" {
  count  = var.enable_nat_gateway ? 1 : 0
  vpc_id = aws_vpc.main.id
}

resource "aws_eip" "nat" {
  count  = var.enable_nat_gateway ? 1 : 0
  domain = "vpc"
}

resource "aws_nat_gateway" "main" {
  count         = var.enable_nat_gateway ? 1 : 0
  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
}

resource "aws_route_table" "public" {
  count  = var.enable_nat_gateway ? 1 : 0
  vpc_id = aws_vpc.main.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main[0].id
  }
}

resource "aws_route_table_association" "public" {
  count          = var.enable_nat_gateway ? 1 : 0
  subnet_id      = aws_subnet.public[0].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.main.id
  dynamic "route" {
    for_each = var.enable_nat_gateway ? [1] : []
    content {
      cidr_block     = "0.0.0.0/0"
      nat_gateway_id = aws_nat_gateway.main[0].id
    }
  }
}

resource "aws_route_table_association" "private" {
  count          = length(aws_subnet.private)
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private.id
}

resource "aws_vpc_endpoint" "s3" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
}

resource "aws_vpc_endpoint" "dynamodb" {
  vpc_id            = aws_vpc.main.id
  service_name      = "com.amazonaws.${var.region}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.private.id]
}

# --- security groups: every ingress rule names the VPC CIDR or a group, never 0.0.0.0/0 ---

locals {
  # Ray: GCS 6379, dashboard 8265, client 10001, node manager / object manager / workers 10002-19999
  ray_ports = [
    { from = 6379, to = 6379, what = "Ray GCS" },
    { from = 8265, to = 8265, what = "Ray dashboard and job API" },
    { from = 10001, to = 10001, what = "Ray client (ray://)" },
    { from = 10002, to = 19999, what = "Ray node, object managers and workers" },
  ]
}

resource "aws_security_group" "ray" {
  name        = "${var.name}-ray"
  description = "Ray head and workers: reachable from inside the VPC only"
  vpc_id      = aws_vpc.main.id
}

resource "aws_vpc_security_group_ingress_rule" "ray" {
  for_each          = { for p in local.ray_ports : "${p.from}-${p.to}" => p }
  security_group_id = aws_security_group.ray.id
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = each.value.from
  to_port           = each.value.to
  description       = each.value.what
}

resource "aws_vpc_security_group_egress_rule" "ray" {
  security_group_id = aws_security_group.ray.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "outbound (S3 endpoint, NAT when enabled)"
}

resource "aws_security_group" "spark" {
  name                   = "${var.name}-spark"
  description            = "EMR nodes: Spark traffic from inside the VPC only (EMR adds its own rules to managed groups)"
  vpc_id                 = aws_vpc.main.id
  revoke_rules_on_delete = true
}

resource "aws_vpc_security_group_ingress_rule" "spark_from_vpc" {
  security_group_id = aws_security_group.spark.id
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = 0
  to_port           = 65535
  description       = "Spark driver, executors, shuffle and YARN inside the VPC"
}

resource "aws_vpc_security_group_egress_rule" "spark" {
  security_group_id = aws_security_group.spark.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
  description       = "outbound (S3 endpoint, Ray head, NAT when enabled)"
}

resource "aws_security_group" "emr_service" {
  name                   = "${var.name}-emr-service"
  description            = "EMR service access for clusters in private subnets"
  vpc_id                 = aws_vpc.main.id
  revoke_rules_on_delete = true
}

resource "aws_vpc_security_group_ingress_rule" "emr_service_from_spark" {
  security_group_id            = aws_security_group.emr_service.id
  referenced_security_group_id = aws_security_group.spark.id
  ip_protocol                  = "tcp"
  from_port                    = 9443
  to_port                      = 9443
  description                  = "EMR service access from the cluster nodes"
}
