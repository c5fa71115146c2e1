print("hidra")
