from vae_cli.cli import train_main

if __name__ == "__main__":
    train_main()
