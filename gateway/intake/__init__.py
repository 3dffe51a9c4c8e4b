"""Getting a photo's bytes: fetch by URL behind the URL guard, S3 reads, uploads kept in S3."""
