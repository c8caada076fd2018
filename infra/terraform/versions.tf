terraform {
  required_version = ">= 1.7"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = merge(var.tags, { Project = "inbedder", ManagedBy = "terraform" })
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
