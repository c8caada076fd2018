output "lake_bucket" {
  value = aws_s3_bucket.lake.id
}

output "delta_lock_table" {
  description = "Commit table for Delta/Spark writers (S3DynamoDBLogStore); delta-rs 1.x writers use S3 conditional writes."
  value       = aws_dynamodb_table.delta_lock.name
}

output "emr_cluster_id" {
  value = aws_emr_cluster.spark.id
}

output "emr_master_dns" {
  description = "spark-submit runs here (inside the VPC)."
  value       = aws_emr_cluster.spark.master_public_dns
}

output "ray_security_group" {
  value = aws_security_group.ray.id
}

output "ray_gpu_workers_asg" {
  value = aws_autoscaling_group.ray_gpu_workers.name
}

output "airflow_webserver_url" {
  value = var.enable_airflow ? aws_mwaa_environment.main[0].webserver_url : null
}
