terraform {
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # aws_eks_pod_identity_association and the split aws_s3_bucket_* resources.
      version = ">= 5.40.0, < 7.0.0"
    }
  }
}
