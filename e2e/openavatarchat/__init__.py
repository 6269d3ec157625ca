"""novabridge inside OpenAvatarChat's own server and page: `make oac-e2e`."""
