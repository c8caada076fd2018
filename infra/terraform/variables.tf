variable "name" {
  description = "Prefix for every resource name."
  type        = string
  default     = "inbedder"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name: 3-21 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "lake_bucket_name" {
  description = "The S3 bucket holding the lake (tables, embeddings, indexes) and the job artifacts."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's private range; Ray and Spark ports accept traffic from it only."
  type        = string
  default     = "10.42.0.0/16"
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) >= 8
    error_message = "vpc_cidr must be a private range of /8 or smaller, never 0.0.0.0/0."
  }
}

variable "availability_zones" {
  description = "Two or more AZs for the private subnets."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]
  validation {
    condition     = length(var.availability_zones) >= 2
    error_message = "availability_zones: at least two."
  }
}

variable "enable_nat_gateway" {
  description = "Outbound internet for the private subnets (PyPI at bootstrap, model hubs). Off: S3 and DynamoDB only, through gateway endpoints."
  type        = bool
  default     = true
}

variable "package_wheel" {
  description = "Key of the inbedder wheel in the lake bucket (built with `python -m build`), installed on every node."
  type        = string
  default     = "artifacts/inbedder-0.1.0-py3-none-any.whl"
}

variable "model_uri" {
  description = "Where the nodes find the model (s3://... copied at boot, or a hub id if NAT is on)."
  type        = string
  default     = ""
}

variable "emr_release" {
  type    = string
  default = "emr-7.5.0"
}

variable "emr_master_instance_type" {
  type    = string
  default = "m6i.xlarge"
}

variable "emr_core_instance_type" {
  type    = string
  default = "m6i.2xlarge"
}

variable "emr_core_instance_count" {
  type    = number
  default = 2
}

variable "ray_ami_id" {
  description = "AMI for Ray nodes (a Deep Learning AMI with NVIDIA drivers for the GPU workers)."
  type        = string
}

variable "ray_head_instance_type" {
  type    = string
  default = "m6i.xlarge"
}

variable "ray_gpu_instance_type" {
  type    = string
  default = "g5.xlarge"
}

variable "ray_gpu_workers_min" {
  type    = number
  default = 0
}

variable "ray_gpu_workers_max" {
  type    = number
  default = 4
  validation {
    condition     = var.ray_gpu_workers_max >= 1
    error_message = "ray_gpu_workers_max must be at least 1."
  }
}

variable "enable_airflow" {
  description = "Create a managed Airflow (MWAA) environment running jobs/airflow."
  type        = bool
  default     = false
}

variable "airflow_version" {
  type    = string
  default = "2.10.3"
}
